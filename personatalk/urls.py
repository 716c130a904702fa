from django.conf import settings
from django.contrib import admin
from django.urls import include, path

from apps.api import metrics
from apps.api import views as api_views
from apps.api.openai_compat import views as openai_views
from apps.api.v1.urls import docs_page as api_docs
from apps.api.v1.urls import legacy_urlpatterns as api_legacy

urlpatterns = [
    path("admin/", admin.site.urls),
    path("health", api_views.health, name="health"),
    path("ready", api_views.ready, name="ready"),
    path("metrics", metrics.metrics, name="metrics"),
    path("api/v1/", include("apps.api.v1.urls")),
    path("api/docs", api_docs, name="api-docs"),
    *api_legacy,  # /characters, /api/voices, /api/tts, /api/asr, /api/memories: deprecated by /api/v1/
    # Every character as an OpenAI-compatible model (base URL http://HOST/v1).
    path("v1/models", openai_views.ModelsView.as_view(), name="openai-models"),
    path("v1/models/<str:model>", openai_views.ModelView.as_view(), name="openai-model"),
    path("v1/chat/completions", openai_views.ChatCompletionsView.as_view(), name="openai-chat-completions"),
    path(f"{settings.MEDIA_URL.strip('/')}/avatars/<path:path>", api_views.avatar, name="avatar"),
    # The end-user web app (gallery at /, chat, accounts); its paths do not overlap the ones above.
    path("", include("apps.web.urls")),
]
