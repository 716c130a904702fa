"""/api/v1/: the public REST API, its OpenAPI schema and Swagger UI (apps/api/v1/views.py has the views)."""

from csp.decorators import csp_update
from django.urls import path, re_path
from drf_spectacular.renderers import OpenApiJsonRenderer, OpenApiJsonRenderer2, OpenApiYamlRenderer
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from apps.api.v1 import views

app_name = "api-v1"


class SchemaView(SpectacularAPIView):
    """The schema as JSON unless YAML is asked for (`?format=yaml` or an Accept header)."""

    renderer_classes = [OpenApiJsonRenderer, OpenApiJsonRenderer2, OpenApiYamlRenderer]


# Swagger UI sets style attributes as it renders; its script is a file of its own (the split view),
# so only inline style is allowed beyond the site's policy, and only on this page.
docs = csp_update({"style-src": ["'unsafe-inline'"]})(SpectacularSwaggerSplitView.as_view(url_name="api-v1:schema"))

urlpatterns = [
    path("schema", SchemaView.as_view(), name="schema"),
    # Anything else under /api/v1/ answers in the API's error shape, not with the site's 404 page.
    re_path(r"^.*$", views.not_found, name="not-found"),
]
