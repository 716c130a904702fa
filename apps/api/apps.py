from django.apps import AppConfig


class ApiConfig(AppConfig):
    name = "apps.api"

    def ready(self):
        from apps.api.v1 import schema  # noqa: F401 - registers the API token's OpenAPI security scheme
