from django.conf import settings
from django.contrib import admin
from django.urls import include, path

from apps.api import memories, speech
from apps.api import views as api_views
from apps.api.v1.urls import docs as api_docs

urlpatterns = [
    path("admin/", admin.site.urls),
    path("health", api_views.health, name="health"),
    path("ready", api_views.ready, name="ready"),
    path("api/v1/", include("apps.api.v1.urls")),
    path("api/docs", api_docs, name="api-docs"),
    path("characters", api_views.characters, name="characters"),
    path("api/voices", speech.voices, name="api-voices"),
    path("api/tts", speech.text_to_speech, name="api-tts"),
    path("api/asr", speech.speech_to_text, name="api-asr"),
    path("api/memories", memories.memories, name="api-memories"),
    path("api/memories/<str:memory_id>", memories.memory, name="api-memory"),
    path(f"{settings.MEDIA_URL.strip('/')}/avatars/<path:path>", api_views.avatar, name="avatar"),
    # The end-user web app (gallery at /, chat, accounts); its paths do not overlap the ones above.
    path("", include("apps.web.urls")),
]
