"""The REST API's one error shape: `{"error": {"code", "message"[, "retry_after"]}}` with a 4xx/5xx status.

Codes come only from `apps.realtime.protocol.ErrorCode`; an unknown one fails when the response is built.
"""

import math

from django.http import JsonResponse

from apps.realtime import protocol as p


def error(status: int, code: str, message: str, *, retry_after: float | None = None) -> JsonResponse:
    body = p.ErrorBody(code=code, message=message).model_dump()
    if retry_after is not None:
        body["retry_after"] = retry_after
    response = JsonResponse({"error": body}, status=status)
    if retry_after is not None:
        response["Retry-After"] = str(math.ceil(retry_after))  # HTTP wants whole seconds
    return response
