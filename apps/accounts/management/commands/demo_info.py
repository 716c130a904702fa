from django.conf import settings
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Print where PersonaTalk is served, the admin login and the demo API token."

    def add_arguments(self, parser):
        parser.add_argument("--url", default="http://127.0.0.1:8000")

    def handle(self, *args, url, **options):
        mode = "embedded" if settings.EMBEDDED else "scaled"
        lines = [
            f"PersonaTalk ({mode} mode) on {url}",
            f"  socket:     {url.replace('http', 'ws', 1)}/ws",
            f"  admin:      {url}/admin/  user {settings.DEMO_USERNAME!r}"
            + (f" password {settings.DEMO_PASSWORD!r}" if settings.DEMO_PASSWORD else " (no DEMO_PASSWORD set)"),
            f"  demo token: {settings.DEMO_API_TOKEN or '(none: set DEMO_API_TOKEN)'}",
            f"  characters: {url}/characters",
        ]
        self.stdout.write("\n".join(lines))
