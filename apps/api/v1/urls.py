"""/api/v1/: the public REST API, its OpenAPI schema (`schema`) and the old paths it replaces.

Swagger UI is at /api/docs (personatalk/urls.py routes `docs` from here).
"""

from csp.decorators import csp_update
from django.urls import path, re_path
from drf_spectacular.renderers import OpenApiJsonRenderer, OpenApiJsonRenderer2, OpenApiYamlRenderer
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from apps.api import memories as legacy_memories
from apps.api import speech as legacy_speech
from apps.api import views as legacy_views
from apps.api.v1 import async_views, cards, docs, turns, views
from apps.api.v1.docs import documented

app_name = "api-v1"


class SchemaView(SpectacularAPIView):
    """The schema as JSON unless YAML is asked for (`?format=yaml` or an Accept header)."""

    renderer_classes = [OpenApiJsonRenderer, OpenApiJsonRenderer2, OpenApiYamlRenderer]


# Swagger UI sets style attributes as it renders; its script is a file of its own (the split view),
# so only inline style is allowed beyond the site's policy, and only on this page.
docs_page = csp_update({"style-src": ["'unsafe-inline'"]})(
    SpectacularSwaggerSplitView.as_view(url_name="api-v1:schema")
)

urlpatterns = [
    path("schema", SchemaView.as_view(), name="schema"),
    path("characters", views.CharacterList.as_view(), name="characters"),
    path("characters/<str:name>", views.CharacterDetail.as_view(), name="character"),
    path("characters/<str:name>/card", cards.CharacterCard.as_view(), name="character-card"),
    path("character-cards", cards.CharacterImport.as_view(), name="character-import"),
    path("voices", views.VoiceList.as_view(), name="voices"),
    path("sessions", views.SessionList.as_view(), name="sessions"),
    path("sessions/<str:session_id>", views.SessionDetail.as_view(), name="session"),
    path("sessions/<str:session_id>/messages", views.SessionMessages.as_view(), name="session-messages"),
    path("sessions/<str:session_id>/turns", turns.SessionTurnView.as_view(), name="session-turns"),
    path("tts", documented(async_views.text_to_speech, docs.TextToSpeechDoc), name="tts"),
    path("asr/jobs", documented(async_views.asr_job_create, docs.AsrJobCreateDoc), name="asr-jobs"),
    path("asr/jobs/<str:job_id>", views.AsrJobDetail.as_view(), name="asr-job"),
    path("memories", views.MemoryList.as_view(), name="memories"),
    path("memories/search", documented(async_views.memory_search, docs.MemorySearchDoc), name="memory-search"),
    path("memories/<str:memory_id>", views.MemoryDetail.as_view(), name="memory"),
    path("tokens", views.TokenList.as_view(), name="tokens"),
    path("tokens/<str:token_id>", views.TokenDetail.as_view(), name="token"),
    # Anything else under /api/v1/ answers in the API's error shape, not with the site's 404 page.
    re_path(r"^.*$", views.not_found, name="not-found"),
]

# The paths before /api/v1/, kept as they were (their own views and shapes) and marked deprecated;
# personatalk/urls.py routes them at the top level.
legacy_urlpatterns = [
    path(
        "characters",
        documented(legacy_views.characters, docs.LegacyCharactersDoc, successor="/api/v1/characters"),
        name="characters",
    ),
    path(
        "api/voices",
        documented(legacy_speech.voices, docs.LegacyVoicesDoc, successor="/api/v1/voices"),
        name="api-voices",
    ),
    path(
        "api/tts",
        documented(legacy_speech.text_to_speech, docs.LegacyTextToSpeechDoc, successor="/api/v1/tts"),
        name="api-tts",
    ),
    path(
        "api/asr",
        documented(legacy_speech.speech_to_text, docs.LegacySpeechToTextDoc, successor="/api/v1/asr/jobs"),
        name="api-asr",
    ),
    path(
        "api/memories",
        documented(legacy_memories.memories, docs.LegacyMemoriesDoc, successor="/api/v1/memories"),
        name="api-memories",
    ),
    path(
        "api/memories/<str:memory_id>",
        documented(legacy_memories.memory, docs.LegacyMemoryDoc, successor="/api/v1/memories/{memory_id}"),
        name="api-memory",
    ),
]
