"""DRF's exceptions and our AppError, as the API's one error shape (apps/api/errors.py).

`exception_handler` is REST_FRAMEWORK["EXCEPTION_HANDLER"]: every DRF view of the project answers an
error as `{"error": {"code", "message"[, "retry_after"]}}` with a code from ErrorCode.
"""

import logging
import uuid
from dataclasses import dataclass, field

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.http import Http404, JsonResponse
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import set_rollback

from apps.api.errors import error_body, retry_after_header
from apps.core.errors import AppError
from apps.realtime.protocol import ErrorCode

log = logging.getLogger(__name__)

# HTTP status of an AppError by its code; any other code is the caller's mistake (400).
APP_ERROR_STATUS = {
    ErrorCode.AUTH_FAILED: 401,
    ErrorCode.PERMISSION_DENIED: 403,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.UNKNOWN_SESSION: 404,
    ErrorCode.UNKNOWN_CHARACTER: 404,
    ErrorCode.UNKNOWN_VOICE: 404,
    ErrorCode.UNKNOWN_TOKEN: 404,
    ErrorCode.MEMORY_NOT_FOUND: 404,
    ErrorCode.JOB_NOT_FOUND: 404,
    ErrorCode.TURN_IN_PROGRESS: 409,
    ErrorCode.NOTHING_TO_REGENERATE: 409,
    ErrorCode.AUDIO_TOO_LARGE: 413,
    ErrorCode.REQUEST_TOO_LARGE: 413,
    ErrorCode.CARD_TOO_LARGE: 413,
    ErrorCode.RATE_LIMITED: 429,
    ErrorCode.INTERNAL_ERROR: 500,
    ErrorCode.LLM_FAILED: 502,
    ErrorCode.TTS_FAILED: 502,
    ErrorCode.ENGINE_FAILED: 502,
    ErrorCode.MEMORY_UNAVAILABLE: 503,
    ErrorCode.TTS_TIMEOUT: 504,
    ErrorCode.ASR_TIMEOUT: 504,
    ErrorCode.MEMORY_TIMEOUT: 504,
    ErrorCode.TURN_TIMEOUT: 504,
}

# The ErrorCode of each of DRF's other exceptions (the first class that matches).
_DRF_CODES: list[tuple[type[exceptions.APIException], str]] = [
    (exceptions.NotAuthenticated, ErrorCode.AUTH_FAILED),
    (exceptions.AuthenticationFailed, ErrorCode.AUTH_FAILED),
    (exceptions.PermissionDenied, ErrorCode.PERMISSION_DENIED),
    (exceptions.NotFound, ErrorCode.NOT_FOUND),
    (exceptions.MethodNotAllowed, ErrorCode.METHOD_NOT_ALLOWED),
    (exceptions.NotAcceptable, ErrorCode.NOT_ACCEPTABLE),
    (exceptions.UnsupportedMediaType, ErrorCode.UNSUPPORTED_MEDIA_TYPE),
    (exceptions.Throttled, ErrorCode.RATE_LIMITED),
]


class RateLimited(AppError):
    """Over a quota of apps/accounts/quotas.py: a 429 with `Retry-After`."""

    def __init__(self, retry_after: float, message: str = "Too many requests; try again later."):
        super().__init__(ErrorCode.RATE_LIMITED, message)
        self.retry_after = retry_after


def _first_error(detail, path: str = "") -> tuple[str, object]:
    """The first (field path, ErrorDetail) of a ValidationError's nested detail."""
    if isinstance(detail, dict):
        for key, value in detail.items():
            name = "" if key == "non_field_errors" else str(key)
            return _first_error(value, f"{path}.{name}" if path and name else path or name)
    if isinstance(detail, list) and detail:
        return _first_error(detail[0], path)
    return path, detail


def _validation_error(exc: exceptions.ValidationError) -> tuple[str, str]:
    field, detail = _first_error(exc.detail)
    drf_code = getattr(detail, "code", None)
    if drf_code in ErrorCode.DESCRIPTIONS:  # a serializer raised one of ours (`code=ErrorCode.X`)
        code = drf_code
    elif drf_code == "required":
        code = ErrorCode.MISSING_FIELD
    else:
        code = ErrorCode.INVALID_FIELD
    message = str(detail) if detail not in (None, "") else "The request is not valid."
    return code, f"`{field}`: {message}" if field else message


def _parse_error(exc: exceptions.ParseError, request) -> tuple[str, str]:
    media_type = getattr(request, "content_type", "") or ""
    code = ErrorCode.INVALID_JSON if "json" in media_type else ErrorCode.INVALID_REQUEST
    return code, str(exc.detail)


@dataclass(frozen=True)
class ApiError:
    """An exception as the API answers it."""

    status: int
    code: str
    message: str
    retry_after: float | None = None
    headers: dict = field(default_factory=dict)

    def body(self) -> dict:
        return error_body(self.code, self.message, retry_after=self.retry_after)

    def all_headers(self) -> dict:
        if self.retry_after is None:
            return self.headers
        return {**self.headers, "Retry-After": retry_after_header(self.retry_after)}


def api_error_of(exc: Exception, request=None) -> ApiError | None:
    """How the API answers `exc` (None: an exception nobody expected, a bug)."""
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    if isinstance(exc, AppError):
        status = APP_ERROR_STATUS.get(exc.code, 400)
        return ApiError(status, exc.code, exc.message, retry_after=getattr(exc, "retry_after", None))
    if isinstance(exc, RequestDataTooBig):
        return ApiError(413, ErrorCode.REQUEST_TOO_LARGE, "The request body is too large.")
    if isinstance(exc, exceptions.ValidationError):
        return ApiError(exc.status_code, *_validation_error(exc))
    if isinstance(exc, exceptions.ParseError):
        return ApiError(exc.status_code, *_parse_error(exc, request))
    if not isinstance(exc, exceptions.APIException):
        return None
    code = next((c for kind, c in _DRF_CODES if isinstance(exc, kind)), ErrorCode.INVALID_REQUEST)
    headers = {"WWW-Authenticate": exc.auth_header} if getattr(exc, "auth_header", None) else {}
    retry_after = getattr(exc, "wait", None)
    if code == ErrorCode.RATE_LIMITED and retry_after is None:
        retry_after = 1.0
    message = str(exc.detail) if isinstance(exc.detail, str) else str(exc.default_detail)
    if isinstance(exc, exceptions.NotAuthenticated):
        message = "Send `Authorization: Bearer <api token>`, or log in."
    return ApiError(exc.status_code, code, message, retry_after=retry_after, headers=headers)


def _unexpected(exc: Exception, where: str) -> ApiError:
    reference = uuid.uuid4().hex[:12]
    log.error("REST %s failed (ref %s)", where, reference, exc_info=exc)
    return ApiError(500, ErrorCode.INTERNAL_ERROR, f"The server failed on this request (ref {reference}).")


def exception_handler(exc: Exception, context: dict) -> Response:
    """REST_FRAMEWORK["EXCEPTION_HANDLER"]: any exception a DRF view raises, as our error shape.

    An exception nobody expected is logged with a reference and answered `internal_error` (500) in
    the same shape; the transaction of the request (ATOMIC_REQUESTS) is rolled back as DRF does.
    """
    set_rollback()
    answer = api_error_of(exc, context.get("request"))
    if answer is None:
        view = context.get("view")
        answer = _unexpected(exc, view.__class__.__name__ if view else "view")
    return Response(answer.body(), status=answer.status, headers=answer.all_headers())


def error_response(exc: Exception, request=None) -> JsonResponse:
    """The same answer from a plain (async) Django view of the API; an unexpected exception is re-raised."""
    answer = api_error_of(exc, request)
    if answer is None:
        raise exc
    response = JsonResponse(answer.body(), status=answer.status)
    for name, value in answer.all_headers().items():
        response[name] = value
    return response


def error_reply(status: int, code: str, message: str, *, retry_after: float | None = None) -> Response:
    """An error a view decides on itself (a status the code's default would not give), in the same shape."""
    answer = ApiError(status, code, message, retry_after=retry_after)
    return Response(answer.body(), status=status, headers=answer.all_headers())
