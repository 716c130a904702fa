from django.apps import AppConfig


class WebConfig(AppConfig):
    """The end-user web app: accounts, the gallery of characters, the chat page."""

    name = "apps.web"
    label = "web"
