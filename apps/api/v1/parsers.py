"""The API's JSON bodies, measured before they are parsed: a size cap, a depth cap, no NaN or Infinity.

DRF's JSONParser would read any body Django lets through (DATA_UPLOAD_MAX_MEMORY_SIZE is sized for
audio uploads) and recurse into any depth (a RecursionError, a 500). This one refuses both with
the API's error codes. Text PostgreSQL cannot store (NUL, lone surrogates) is refused by the text
fields that would store it (DRF's CharField validators), not in fields the API ignores.
"""

from rest_framework.exceptions import ParseError, ValidationError
from rest_framework.parsers import JSONParser

from apps.core.errors import AppError
from apps.core.jsontext import bad_text_at, json_loads_strict, json_too_deep
from apps.realtime.protocol import MAX_JSON_DEPTH, ErrorCode

MAX_JSON_BYTES = 1024 * 1024  # an OpenAI-style chat history fits; a title or a token name needs far less


def json_body(data: bytes):
    """A JSON body already read (at most MAX_JSON_BYTES + 1 bytes of it), checked and parsed.

    Raises ParseError (bad UTF-8 or JSON, NaN, too deep) or AppError `request_too_large`.
    """
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
    return value  # text fields refuse NUL and lone surrogates themselves (DRF's CharField validators)


class ApiJSONParser(JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        return json_body(stream.read(MAX_JSON_BYTES + 1))


class StrictJSONParser(ApiJSONParser):
    """ApiJSONParser, and no text the database cannot store anywhere in the body: a turn's messages
    (an OpenAI client's whole history) are saved as sent, not through one CharField each."""

    def parse(self, stream, media_type=None, parser_context=None):
        data = super().parse(stream, media_type, parser_context)
        where = bad_text_at(data)
        if where is not None:
            raise ValidationError({where: ["Text may not hold NUL characters or unpaired surrogates."]})
        return data
