"""JSON bodies parsed as the socket parses frames (apps/core/jsontext.py): nesting measured before
parsing (json recurses once per level: a deep body would be a 500), no NaN/Infinity, and only text
the database can store (no NUL, no lone surrogate)."""

from django.conf import settings
from rest_framework.exceptions import ParseError, ValidationError
from rest_framework.parsers import JSONParser

from apps.core.jsontext import bad_text_at, json_loads_strict, json_too_deep
from apps.realtime.protocol import MAX_JSON_DEPTH


class StrictJSONParser(JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        try:
            text = stream.read().decode(encoding)
        except (UnicodeDecodeError, LookupError) as exc:
            raise ParseError(f"The body is not {encoding} text.") from exc
        if json_too_deep(text, MAX_JSON_DEPTH):
            raise ParseError(f"The JSON nests deeper than {MAX_JSON_DEPTH} levels.")
        try:
            data = json_loads_strict(text)
        except ValueError as exc:
            raise ParseError(f"The body is not valid JSON: {exc}") from exc
        where = bad_text_at(data)
        if where is not None:
            raise ValidationError({where: ["Text may not hold NUL characters or unpaired surrogates."]})
        return data
