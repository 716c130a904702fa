"""REST for memories: a user lists, searches and deletes what characters remember of them.

    GET    /api/memories?character=<slug>&q=<search>&limit=<n>   → {memories: [...]}
    DELETE /api/memories/<id>                                    → 204

Authenticated by `Authorization: Bearer <api token>` or the logged-in session; only ever the
caller's own memories.
"""

from channels.db import database_sync_to_async
from django.http import HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from apps.accounts.services import token_authenticate
from apps.api.errors import error
from apps.api.speech import over_quota, queue_and_wait
from apps.characters.selectors import character_drafts_visible, character_get_for_chat
from apps.memory.selectors import memories_of, memory_item
from apps.memory.services import MemoryRequestError, memory_delete
from apps.realtime import protocol as p


async def _user(request):
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        token = await database_sync_to_async(token_authenticate)(key=header[7:].strip())
        return token.user if token else None
    user = await request.auser()
    return user if user.is_authenticated else None


def _owner_character(*, user, slug: str):
    """(character id or None, error response or None) for the `character` parameter."""
    if not slug:
        return None, None
    character = character_get_for_chat(name=slug, include_unpublished=character_drafts_visible(user=user))
    if character is None:
        return None, error(404, p.ErrorCode.UNKNOWN_CHARACTER, f"No character named {slug!r}.")
    return character.pk, None


@require_http_methods(["GET"])
async def memories(request):
    user = await _user(request)
    if user is None:
        return error(401, p.ErrorCode.AUTH_FAILED, "Send `Authorization: Bearer <api token>` or log in.")
    try:
        limit = int(request.GET.get("limit", 50))
    except ValueError:
        return error(400, p.ErrorCode.INVALID_FIELD, "`limit` is an integer.")
    if not 1 <= limit <= 200:
        return error(400, p.ErrorCode.INVALID_FIELD, "`limit` is within 1–200.")
    query = request.GET.get("q", "").strip()
    if len(query) > 500:
        return error(400, p.ErrorCode.INVALID_FIELD, "`q` is limited to 500 characters.")
    character_id, problem = await database_sync_to_async(_owner_character)(
        user=user, slug=request.GET.get("character", "").strip()
    )
    if problem:
        return problem
    if not query:
        rows = await database_sync_to_async(memories_of)(user_id=user.pk, character_id=character_id, limit=limit)
        return JsonResponse({"memories": [memory_item(m) for m in rows]})
    if character_id is None:
        return error(400, p.ErrorCode.MISSING_FIELD, "Searching (`q`) needs `character`.")
    if limited := await over_quota(user, "memory_search"):
        return limited
    try:  # by meaning: the embed queue has the model
        answer = await queue_and_wait(
            "workers.embed.tasks.memory_search", 20, user_id=user.pk, character_id=character_id, query=query, k=limit
        )
    except TimeoutError:
        return error(504, p.ErrorCode.MEMORY_TIMEOUT, "No embedding worker answered in time.")
    if "error" in answer:
        return error(503, answer["error"]["code"], answer["error"]["message"])
    return JsonResponse({"memories": answer["items"]})


@csrf_exempt
@require_http_methods(["DELETE"])
async def memory(request, memory_id: str):
    user = await _user(request)
    if user is None:
        return error(401, p.ErrorCode.AUTH_FAILED, "Send `Authorization: Bearer <api token>` or log in.")
    try:
        await database_sync_to_async(memory_delete)(user_id=user.pk, memory_id=memory_id)
    except MemoryRequestError as exc:
        return error(404 if exc.code == "memory_not_found" else 400, exc.code, exc.message)
    return HttpResponse(status=204)
