from django.core.management.base import BaseCommand, CommandError

from workers.llm.engines import EngineConfigError, get_engine


class Command(BaseCommand):
    help = "Check and load the configured models once (converts the LLM into its fast-loading cache)."

    def handle(self, *args, **options):
        try:
            engine = get_engine()
        except EngineConfigError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"LLM ready: {engine.name}")
