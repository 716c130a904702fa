"""JSON from untrusted text: nesting measured before parsing, no NaN/Infinity, text PostgreSQL can store.

Shared by the socket's client frames and character card files; each caller picks its own limit and
error code. json.loads recurses once per level, so the depth is measured first, without recursion.
"""

import json
import math
import re

import numpy as np

# A string (closed or not) or a run of anything else but brackets: deleting these leaves the
# brackets outside strings, in one linear regex pass (no backtracking on unterminated strings).
_STRINGS_AND_NON_BRACKETS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?|[^"\[\]{}]+', re.S)
_DEPTH_STEP = str.maketrans({"[": "\x01", "{": "\x01", "]": "\xff", "}": "\xff"})  # +1 / -1 as int8
_BAD_TEXT = re.compile("[\x00\ud800-\udfff]")  # PostgreSQL text holds neither NUL nor lone surrogates


def json_too_deep(text: str, limit: int) -> bool:
    """Whether the JSON nests deeper than `limit` levels, measured without recursion."""
    if text.count("[") + text.count("{") <= limit:
        return False
    steps = np.frombuffer(_STRINGS_AND_NON_BRACKETS.sub("", text).translate(_DEPTH_STEP).encode("latin-1"), np.int8)
    return bool(steps.size) and int(np.cumsum(steps, dtype=np.int32).max()) > limit


def _no_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def _finite_float(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):
        raise ValueError(f"{literal} is out of range")
    return value


def json_loads_strict(text: str):
    """json.loads refusing NaN, Infinity and floats out of range (ValueError); check the depth first."""
    return json.loads(text, parse_constant=_no_constant, parse_float=_finite_float)


def bad_text_at(value, path: str = "") -> str | None:
    """The path of the first string (or key) holding text the database cannot store, or None.

    Recurses once per level: call it on JSON whose depth was checked."""
    if isinstance(value, str):
        return (path or "$") if _BAD_TEXT.search(value) else None  # "$": the value itself
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        where = f"{path}[{key}]" if isinstance(key, int) else f"{path}.{key}" if path else key
        if isinstance(key, str) and _BAD_TEXT.search(key):
            return where
        found = bad_text_at(item, where)
        if found is not None:
            return found
    return None
