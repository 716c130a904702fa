from django.core.management.base import BaseCommand

from apps.realtime.docs import render


class Command(BaseCommand):
    help = "Print the socket protocol reference (docs/protocol.md) generated from the frame classes."

    def handle(self, *args, **options):
        self.stdout.write(render(), ending="")
