from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from apps.accounts.models import ApiToken
from apps.accounts.services import demo_user_ensure, token_hash
from apps.characters.services import demo_characters_ensure


class Command(BaseCommand):
    help = (
        "Create the demo staff user (and its API token when DEMO_API_TOKEN is set), the demo voice and "
        "three published characters. Idempotent: rows that exist are left as they are (a password is set "
        "only when the user is created, never reset)."
    )

    def handle(self, *args, **options):
        username = settings.DEMO_USERNAME
        key = settings.DEMO_API_TOKEN
        user_existed = get_user_model().objects.filter(username=username).exists()
        token_existed = bool(key) and ApiToken.objects.filter(key_hash=token_hash(key)).exists()
        user = demo_user_ensure(username=username, password=settings.DEMO_PASSWORD, api_token=key)
        if not user_existed:
            self.stdout.write(f"created user {user.username} (staff)")
            if not user.has_usable_password():
                self.stdout.write(f"DEMO_PASSWORD is empty: set one with `manage.py changepassword {username}`")
        if not key:
            self.stdout.write("DEMO_API_TOKEN is empty: no demo API token")
        elif not token_existed:
            self.stdout.write(f"created API token {key[:8]}… for {user.username}")
        for line in demo_characters_ensure():
            self.stdout.write(f"created {line}")
        self.stdout.write(self.style.SUCCESS(f"demo data ready (user {username!r})"))
