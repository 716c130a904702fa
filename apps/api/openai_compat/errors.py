"""OpenAI's error shape on /v1: `{"error": {"message", "type", "param", "code"}}`, the one its clients parse.

The status picks the client's exception (openai: 401 AuthenticationError, 404 NotFoundError, 400
BadRequestError, 409 ConflictError, 429 RateLimitError). `code` is OpenAI's where it has one
(invalid_api_key, model_not_found, rate_limit_exceeded), else one of PersonaTalk's ErrorCode values.
"""

import math

from rest_framework import exceptions as drf
from rest_framework.response import Response

from apps.core.errors import AppError
from apps.realtime import protocol as p

INVALID_REQUEST = "invalid_request_error"
TYPES = {401: INVALID_REQUEST, 404: INVALID_REQUEST, 409: INVALID_REQUEST, 429: "rate_limit_error"}
INVALID_API_KEY = "invalid_api_key"
MODEL_NOT_FOUND = "model_not_found"
RATE_LIMIT_EXCEEDED = "rate_limit_exceeded"


def _message(detail) -> str:
    """The first message of a DRF error detail (a string, a list, or fields to lists)."""
    if isinstance(detail, dict):
        return _message(next(iter(detail.values()))) if detail else "Invalid request."
    if isinstance(detail, list):
        return _message(detail[0]) if detail else "Invalid request."
    return str(detail)


def error_type(status: int) -> str:
    return TYPES.get(status, "server_error" if status >= 500 else INVALID_REQUEST)


def error_body(status: int, message: str, *, code: str | None, param: str | None = None) -> dict:
    return {"error": {"message": message, "type": error_type(status), "param": param, "code": code}}


class CompatError(Exception):
    """A request /v1 refuses, answered in OpenAI's shape."""

    def __init__(
        self, status: int, message: str, *, code: str | None, param: str | None = None, retry_after: float | None = None
    ):
        super().__init__(message)
        self.status, self.message, self.code, self.param, self.retry_after = status, message, code, param, retry_after

    def response(self) -> Response:
        response = Response(error_body(self.status, self.message, code=self.code, param=self.param), status=self.status)
        if self.retry_after is not None:
            response["Retry-After"] = str(math.ceil(self.retry_after))
        if self.status >= 500:  # the turn was saved as failed: a retry would say the line again
            response["x-should-retry"] = "false"
        return response

    @classmethod
    def of(cls, exc: AppError, *, status: int, retry_after: float | None = None, param: str | None = None):
        """An AppError (a turn refused) in this shape; a rate limit gets OpenAI's code."""
        code = RATE_LIMIT_EXCEEDED if status == 429 else exc.code
        return cls(status, exc.message, code=code, param=param, retry_after=retry_after)


def exception_handler(exc, context):
    """The /v1 views' exception handler (DRF's own errors included); None (a 500) for the rest."""
    if isinstance(exc, CompatError):
        return exc.response()
    if isinstance(exc, drf.NotAuthenticated | drf.AuthenticationFailed):
        message = "Incorrect or missing API key: send a PersonaTalk API token as the bearer key."
        response = CompatError(401, message, code=INVALID_API_KEY).response()
        response["WWW-Authenticate"] = 'Bearer realm="api"'
        return response
    if isinstance(exc, drf.ValidationError):
        detail = exc.detail
        param = next(iter(detail), None) if isinstance(detail, dict) else None
        param = None if param == "non_field_errors" else param  # the body itself (not an object)
        return CompatError(400, _message(detail), code=p.ErrorCode.INVALID_FIELD, param=param).response()
    if isinstance(exc, drf.ParseError):
        return CompatError(
            400, "We could not parse the JSON body of your request.", code=p.ErrorCode.INVALID_JSON
        ).response()
    if isinstance(exc, drf.APIException):
        return CompatError(exc.status_code, _message(exc.detail), code=None).response()
    return None
