"""The REST API's one error shape: `{"error": {"code", "message"[, "retry_after"]}}` with a 4xx/5xx status.

Codes come only from `apps.realtime.protocol.ErrorCode`; an unknown one fails when the response is built.
The plain Django views answer with `error()`; the DRF views of /api/v1/ build the same body with
`error_body()` in their exception handler (apps/api/v1/exceptions.py).
"""

import math

from django.http import JsonResponse

from apps.realtime import protocol as p


def error_body(code: str, message: str, *, retry_after: float | None = None) -> dict:
    """`{"error": {...}}` for `code` (an ErrorCode; another raises ValueError)."""
    body = p.ErrorBody(code=code, message=message).model_dump()
    if retry_after is not None:
        body["retry_after"] = retry_after
    return {"error": body}


def retry_after_header(retry_after: float) -> str:
    return str(math.ceil(retry_after))  # HTTP wants whole seconds


def error(status: int, code: str, message: str, *, retry_after: float | None = None) -> JsonResponse:
    response = JsonResponse(error_body(code, message, retry_after=retry_after), status=status)
    if retry_after is not None:
        response["Retry-After"] = retry_after_header(retry_after)
    return response
