"""The API's JSON bodies, measured before they are parsed: a size cap, a depth cap, no NaN, storable text.

DRF's JSONParser would read any body Django lets through (DATA_UPLOAD_MAX_MEMORY_SIZE is sized for
audio uploads), recurse into any depth, and pass on a NUL or a lone surrogate that PostgreSQL
cannot store (a 500 later). This one refuses each with the API's error codes.
"""

from rest_framework.exceptions import ParseError, ValidationError
from rest_framework.parsers import JSONParser

from apps.core.errors import AppError
from apps.core.jsontext import bad_text_at, json_loads_strict, json_too_deep
from apps.realtime.protocol import MAX_JSON_DEPTH, ErrorCode

MAX_JSON_BYTES = 1024 * 1024  # an OpenAI-style chat history fits; a title or a token name needs far less


class ApiJSONParser(JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        data = stream.read(MAX_JSON_BYTES + 1)
        if len(data) > MAX_JSON_BYTES:
            raise AppError(ErrorCode.REQUEST_TOO_LARGE, f"A JSON body is limited to {MAX_JSON_BYTES} bytes.")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise ParseError("The body is not UTF-8.") from None
        if json_too_deep(text, MAX_JSON_DEPTH):
            raise ParseError(f"The JSON nests deeper than {MAX_JSON_DEPTH} levels.")
        try:
            value = json_loads_strict(text)
        except ValueError:
            raise ParseError("The body is not valid JSON.") from None
        where = bad_text_at(value)
        if where is not None:
            raise ValidationError({where: "Text may not hold NUL characters or unpaired surrogates."})
        return value
