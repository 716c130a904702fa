"""The /api/v1/ views that wait on a worker or take an upload: async Django views, so a wait holds no
thread (Django runs every sync view of a process in one thread) and an upload's size is checked
before its body is read (`CappedUpload`). Authenticated as the DRF views are (apps/api/v1/auth.py),
answering in the same error shape; documented in the schema by apps/api/v1/docs.py.
"""

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from django.http import HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST
from rest_framework.exceptions import NotAuthenticated, PermissionDenied, UnsupportedMediaType, ValidationError
from rest_framework.renderers import JSONRenderer

from apps.api.speech import over_quota, tts_answer, upload_checked
from apps.api.v1 import serializers as s
from apps.api.v1.auth import ApiTokenAuthentication, caller_of, csrf_refusal
from apps.api.v1.exceptions import error_response
from apps.api.v1.parsers import MAX_JSON_BYTES, json_body
from apps.conversations.services import asr_job_start
from apps.core.errors import AppError
from apps.memory.selectors import amemories_search_by_worker, memory_character_get
from apps.realtime.protocol import ErrorCode


def _json(data, status: int = 200, headers: dict | None = None) -> HttpResponse:
    """JSON as the DRF views render it (the same date and number formats)."""
    return HttpResponse(JSONRenderer().render(data), status=status, content_type="application/json", headers=headers)


def _unauthenticated(request) -> HttpResponse:
    exc = NotAuthenticated()
    exc.auth_header = ApiTokenAuthentication().authenticate_header(request)
    return error_response(exc, request)


def _csrf_check(request) -> None:
    """The CSRF check DRF's SessionAuthentication makes, for a caller the session cookie authenticated."""
    if refusal := csrf_refusal(request):
        raise PermissionDenied(f"CSRF Failed: {refusal}")


@csrf_exempt  # checked below for session callers only, as DRF does (a token needs none)
@require_POST
async def text_to_speech(request):
    caller = await caller_of(request)
    if caller is None:
        return _unauthenticated(request)
    try:
        if caller.token is None:
            await sync_to_async(_csrf_check)(request)
        if limited := await over_quota(caller.user, "speech"):
            return limited
        if "json" not in (request.content_type or ""):
            raise UnsupportedMediaType(request.content_type or "none", detail="Send the request as application/json.")
        body = json_body(await sync_to_async(request.read, thread_sensitive=False)(MAX_JSON_BYTES + 1))
    except Exception as exc:
        return error_response(exc, request)
    return await tts_answer(body)


@csrf_exempt
@require_POST
async def asr_job_create(request):
    caller = await caller_of(request)
    if caller is None:
        return _unauthenticated(request)
    if limited := await over_quota(caller.user, "speech"):
        return limited
    try:
        data = await upload_checked(request, before_read=_csrf_check if caller.token is None else None)
    except PermissionDenied as exc:
        return error_response(exc, request)
    if isinstance(data, HttpResponse):
        return data
    job = await database_sync_to_async(asr_job_start)(user=caller.user, audio=data)
    del data
    location = f"/api/v1/asr/jobs/{job.pk}"
    return _json(s.AsrJobSerializer(job).data, status=202, headers={"Location": location})


@require_GET
async def memory_search(request):
    caller = await caller_of(request)
    if caller is None:
        return _unauthenticated(request)
    query = s.MemorySearchQuerySerializer(data=request.GET)
    try:
        query.is_valid(raise_exception=True)
        asked = query.validated_data
        user_id = caller.user.pk
        character = await database_sync_to_async(memory_character_get)(user_id=user_id, slug=asked["character"])
        if character is None:
            raise AppError(ErrorCode.UNKNOWN_CHARACTER, f"No character named {asked['character']!r}.")
        if limited := await over_quota(caller.user, "memory_search"):
            return limited
        hits = await amemories_search_by_worker(
            user_id=user_id, character_id=character.pk, query=asked["q"], k=asked["limit"]
        )
    except (AppError, ValidationError) as exc:
        return error_response(exc, request)
    context = {"similarity": {m.pk: similarity for m, similarity in hits}}
    return _json({"results": s.MemorySerializer([m for m, _ in hits], many=True, context=context).data})
