from django.conf import settings
from django.contrib import admin
from django.urls import include, path

from apps.api import memories, metrics, speech
from apps.api import views as api_views
from apps.api.openai_compat import views as openai_views
from apps.api.v1 import turns as v1_turns

urlpatterns = [
    path("admin/", admin.site.urls),
    path("health", api_views.health, name="health"),
    path("ready", api_views.ready, name="ready"),
    path("metrics", metrics.metrics, name="metrics"),
    path("characters", api_views.characters, name="characters"),
    path("api/voices", speech.voices, name="api-voices"),
    path("api/tts", speech.text_to_speech, name="api-tts"),
    path("api/asr", speech.speech_to_text, name="api-asr"),
    path("api/memories", memories.memories, name="api-memories"),
    path("api/memories/<str:memory_id>", memories.memory, name="api-memory"),
    path("api/v1/sessions/<str:session_id>/turns", v1_turns.SessionTurnView.as_view(), name="api-v1-session-turns"),
    # Every character as an OpenAI-compatible model (base URL http://HOST/v1).
    path("v1/models", openai_views.ModelsView.as_view(), name="openai-models"),
    path("v1/models/<str:model>", openai_views.ModelView.as_view(), name="openai-model"),
    path("v1/chat/completions", openai_views.ChatCompletionsView.as_view(), name="openai-chat-completions"),
    path(f"{settings.MEDIA_URL.strip('/')}/avatars/<path:path>", api_views.avatar, name="avatar"),
    # The end-user web app (gallery at /, chat, accounts); its paths do not overlap the ones above.
    path("", include("apps.web.urls")),
]
