"""DRF's exceptions in the API's one error shape, `{"error": {"code", "message"[, "retry_after"]}}`.

Codes come from apps.realtime.protocol.ErrorCode, as apps/api/errors.py builds them; an AppError
raised by a service answers with its own code, at its `status` when it carries one (else 400).
"""

import math

from rest_framework import exceptions as drf
from rest_framework.response import Response

from apps.core.errors import AppError
from apps.realtime import protocol as p

_CODES = [
    (drf.NotAuthenticated, p.ErrorCode.AUTH_FAILED),
    (drf.AuthenticationFailed, p.ErrorCode.AUTH_FAILED),
    (drf.PermissionDenied, p.ErrorCode.AUTH_FAILED),
    (drf.ParseError, p.ErrorCode.INVALID_JSON),
    (drf.Throttled, p.ErrorCode.RATE_LIMITED),
]


def error_response(status: int, code: str, message: str, *, retry_after: float | None = None) -> Response:
    """The error shape as a DRF Response (`Retry-After` in whole seconds with `retry_after`)."""
    body = p.ErrorBody(code=code, message=message).model_dump()
    if retry_after is not None:
        body["retry_after"] = retry_after
    response = Response({"error": body}, status=status)
    if retry_after is not None:
        response["Retry-After"] = str(math.ceil(retry_after))  # HTTP wants whole seconds
    return response


def _message(detail) -> str:
    """The first message of a DRF error detail (a string, a list, or fields to lists), with its field."""
    if isinstance(detail, dict):
        field, inner = next(iter(detail.items()))
        return _message(inner) if field == "non_field_errors" else f"`{field}`: {_message(inner)}"
    if isinstance(detail, list):
        return _message(detail[0]) if detail else "Invalid request."
    return str(detail)


def exception_handler(exc, context):
    """The REST_FRAMEWORK EXCEPTION_HANDLER; None (a 500) for what is not an API error."""
    if isinstance(exc, AppError):
        return error_response(
            getattr(exc, "status", 400), exc.code, exc.message, retry_after=getattr(exc, "retry_after", None)
        )
    if not isinstance(exc, drf.APIException):
        return None
    code = next((c for kind, c in _CODES if isinstance(exc, kind)), p.ErrorCode.INVALID_FIELD)
    response = error_response(exc.status_code, code, _message(exc.detail), retry_after=getattr(exc, "wait", None))
    if getattr(exc, "auth_header", None):
        response["WWW-Authenticate"] = exc.auth_header
    return response
