"""Client frames from untrusted text: size, UTF-8, JSON depth and constants, storable text, schema."""

import json
import math
import re

import numpy as np
from django.conf import settings
from pydantic import ValidationError

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
    bad = _bad_text_at(data)
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


# A string (closed or not) or a run of anything else but brackets: deleting these leaves the
# brackets outside strings, in one linear regex pass (no backtracking on unterminated strings).
_STRINGS_AND_NON_BRACKETS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?|[^"\[\]{}]+', re.S)
_DEPTH_STEP = str.maketrans({"[": "\x01", "{": "\x01", "]": "\xff", "}": "\xff"})  # +1 / -1 as int8
_BAD_TEXT = re.compile("[\x00\ud800-\udfff]")  # PostgreSQL text holds neither NUL nor lone surrogates


def _too_deep(text: str) -> bool:
    """Whether the JSON nests deeper than MAX_JSON_DEPTH, measured without recursion."""
    if text.count("[") + text.count("{") <= p.MAX_JSON_DEPTH:
        return False
    steps = np.frombuffer(_STRINGS_AND_NON_BRACKETS.sub("", text).translate(_DEPTH_STEP).encode("latin-1"), np.int8)
    return bool(steps.size) and int(np.cumsum(steps, dtype=np.int32).max()) > p.MAX_JSON_DEPTH


def _no_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def _finite_float(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):
        raise ValueError(f"{literal} is out of range")
    return value


def _json_loads(text: str):
    if _too_deep(text):
        raise ClientError(p.ErrorCode.INVALID_JSON, f"The frame nests deeper than {p.MAX_JSON_DEPTH} levels.")
    try:
        return json.loads(text, parse_constant=_no_constant, parse_float=_finite_float)
    except (ValueError, RecursionError):
        raise ClientError(p.ErrorCode.INVALID_JSON, "The frame is not valid JSON.") from None


def _bad_text_at(value, path: str = "") -> str | None:
    """The path of the first string (or key) holding text the database cannot store, or None."""
    if isinstance(value, str):
        return (path or "type") if _BAD_TEXT.search(value) else None
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        where = f"{path}[{key}]" if isinstance(key, int) else f"{path}.{key}" if path else key
        if isinstance(key, str) and _BAD_TEXT.search(key):
            return where
        found = _bad_text_at(item, where)
        if found is not None:
            return found
    return None
