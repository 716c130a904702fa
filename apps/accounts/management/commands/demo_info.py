import os
import sys
import time
import urllib.error
import urllib.request

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = (
        "Print where PersonaTalk is served, the admin login and the demo API token; with --wait, once the "
        "server answers /health (after it has warmed its models)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--url", default="http://127.0.0.1:8000")
        parser.add_argument("--wait", action="store_true", help="Wait until GET <url>/health answers 200.")
        parser.add_argument("--pid", type=int, help="With --wait: the server's process; fail if it exits first.")

    def handle(self, *args, url, wait, pid, **options):
        if wait:
            self.wait_ready(url, pid)
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

    def wait_ready(self, url: str, pid: int | None) -> None:
        """Poll /health; no deadline while the server process lives (loading models takes what it takes)."""
        if settings.WARM_MODELS:
            print("warming the models before announcing the URL…", file=sys.stderr)
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            if pid is not None and not _alive(pid):
                raise CommandError("The server exited before it was ready (see its log above).")
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
                    if answer.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.25)
        raise CommandError(f"{url}/health did not answer within 10 minutes.")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a child that exited but was not reaped yet is a zombie: gone for our purpose
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True
