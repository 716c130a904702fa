"""Error codes come only from ErrorCode: a misspelled one fails where it is raised, not in a client."""

import re
from pathlib import Path

import pytest

from apps.api.errors import error
from apps.core.audio import AudioError
from apps.core.errors import AppError
from apps.realtime import protocol as p
from apps.realtime.state import ClientError

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("kind", [AppError, AudioError, ClientError])
def test_an_unknown_code_fails_when_the_error_is_made(kind):
    with pytest.raises(ValueError, match="not an ErrorCode"):
        kind("no_such_code", "message")
    assert kind(p.ErrorCode.INVALID_AUDIO, "message").code == "invalid_audio"


def test_a_rest_error_has_one_shape_and_a_known_code():
    with pytest.raises(ValueError):
        error(400, "no_such_code", "message")
    response = error(429, p.ErrorCode.RATE_LIMITED, "Too many.", retry_after=2.5)
    assert response.status_code == 429 and response["Retry-After"] == "3"
    assert response.content == b'{"error": {"code": "rate_limited", "message": "Too many.", "retry_after": 2.5}}'


def test_no_code_is_spelled_out_where_an_error_is_raised():
    """Raising with a string literal hides a typo until a client sees it: use ErrorCode's names."""
    pattern = re.compile(
        r'(?:ClientError|AudioError|AppError|MemoryRequestError|error|_fail)\(\s*(?:\d{3},\s*)?"[a-z_]+"'
    )
    found = [
        f"{path.relative_to(ROOT)}:{n}"
        for folder in ("apps", "workers")
        for path in (ROOT / folder).rglob("*.py")
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert found == []
