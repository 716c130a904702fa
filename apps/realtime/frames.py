"""Client frames from untrusted text: size, UTF-8, JSON depth and constants, storable text, schema."""

from django.conf import settings
from pydantic import ValidationError

from apps.core.jsontext import bad_text_at, json_loads_strict, json_too_deep
from apps.realtime import protocol as p
from apps.realtime.state import ClientError


def frame_parse(text: str, *, connected: bool) -> p.Frame:
    """The client frame `text` holds, or ClientError with the code that says what is wrong with it."""
    try:
        size = len(text.encode())
    except UnicodeEncodeError:  # lone surrogates: not text a WebSocket can carry
        raise ClientError(p.ErrorCode.INVALID_JSON, "The frame is not UTF-8 text.") from None
    if size > settings.WS_MAX_FRAME_BYTES:
        raise ClientError(p.ErrorCode.FRAME_TOO_LARGE, f"Frames are limited to {settings.WS_MAX_FRAME_BYTES} bytes.")
    data = _json_loads(text)
    if not isinstance(data, dict) or not isinstance(data.get("type"), str):
        raise ClientError(p.ErrorCode.INVALID_FRAME, "A frame is a JSON object with a string `type`.")
    bad = bad_text_at(data)
    if bad is not None:
        where = bad.encode("ascii", "backslashreplace").decode()
        raise ClientError(
            p.ErrorCode.INVALID_FIELD, f"Field `{where}`: text may not hold NUL characters or unpaired surrogates."
        )
    schema = p.CLIENT_FRAMES.get(data["type"])
    if schema is None:
        raise ClientError(p.ErrorCode.UNKNOWN_TYPE, f"Unknown frame type {data['type']!r}.")
    try:
        frame = schema.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first["loc"])
        if first["type"] == "missing":
            raise ClientError(p.ErrorCode.MISSING_FIELD, f"`{data['type']}` needs the field `{where}`.") from None
        raise ClientError(p.ErrorCode.INVALID_FIELD, f"Field `{where}`: {first['msg']}.") from None
    if frame.type != "connect" and not connected:
        raise ClientError(p.ErrorCode.NOT_CONNECTED, "Send a `connect` frame first.")
    return frame


def _json_loads(text: str):
    if json_too_deep(text, p.MAX_JSON_DEPTH):
        raise ClientError(p.ErrorCode.INVALID_JSON, f"The frame nests deeper than {p.MAX_JSON_DEPTH} levels.")
    try:
        return json_loads_strict(text)
    except (ValueError, RecursionError):
        raise ClientError(p.ErrorCode.INVALID_JSON, "The frame is not valid JSON.") from None
