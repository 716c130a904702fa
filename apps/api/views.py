from pathlib import Path

from django.conf import settings
from django.http import JsonResponse
from django.views.decorators.http import require_GET, require_safe
from django.views.static import serve

from apps.api.selectors import check_channel_layer, check_database, check_workers
from apps.characters.selectors import character_list_published


@require_GET
def health(request):
    """Liveness: the process answers."""
    return JsonResponse({"status": "ok"})


@require_GET
def ready(request):
    """Readiness: database, channel layer, broker and a live worker per queue (scaled mode)."""
    checks = {"database": check_database(), "channel_layer": check_channel_layer(), "workers": check_workers()}
    problems = {name: reason for name, reason in checks.items() if reason}
    body = {"status": "ready" if not problems else "not_ready", "checks": {k: v or "ok" for k, v in checks.items()}}
    return JsonResponse(body, status=200 if not problems else 503)


@require_GET
def characters(request):
    """Published characters: `{characters: [{name, display_name, description, voice_id}]}`."""
    rows = [
        {
            "name": c.slug,
            "display_name": c.name,
            "description": c.description,
            "voice_id": c.voice.name if c.voice else None,
            "avatar_url": request.build_absolute_uri(c.avatar.url) if c.avatar else None,
            "greeting": c.greeting,
            "tags": c.tag_list,
        }
        for c in character_list_published()
    ]
    return JsonResponse({"characters": rows})


@require_safe
def avatar(request, path: str):
    """A character's avatar (public, like the gallery), in every mode; a proxy may serve MEDIA_URL/avatars/ instead.

    Only avatars: the rest of MEDIA_ROOT holds users' own recordings (KEEP_AUDIO) and is never public.
    """
    response = serve(request, path, document_root=Path(settings.MEDIA_ROOT) / "avatars")
    response["Cache-Control"] = "public, max-age=3600"
    return response
