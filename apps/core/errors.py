"""The application's one error type: a stable `code` and a message a person can read.

Raised by services, selectors and engines; every interface turns it into its own shape (a socket
`error` frame, a REST `{"error": {code, message}}`, an admin message, a command error). Codes come
from apps.realtime.protocol.ErrorCode, a leaf module any layer may import.
"""

from apps.realtime.protocol import ErrorCode


class AppError(Exception):
    """Something the caller asked for cannot be done; `code` is stable for clients."""

    def __init__(self, code: str, message: str):
        if code not in ErrorCode.DESCRIPTIONS:  # a misspelled code fails here, not in a client
            raise ValueError(f"{code!r} is not an ErrorCode")
        super().__init__(message)
        self.code, self.message = code, message


class EngineError(AppError):
    """A model engine failed while working (the job fails, the worker lives on)."""

    def __init__(self, message: str, code: str = ErrorCode.ENGINE_FAILED):
        super().__init__(code, message)


class EngineConfigError(EngineError):
    """An engine cannot start: a missing model or a bad setting. The message names the setting."""
