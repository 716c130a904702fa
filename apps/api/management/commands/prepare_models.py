from django.core.management.base import BaseCommand, CommandError

from apps.core.errors import EngineConfigError
from workers.asr.engine import get_asr_engine
from workers.embed.engine import get_embedder
from workers.llm.engines import get_engine
from workers.tts.engine import get_tts_engines


class Command(BaseCommand):
    help = "Check and load the configured models (LLM, ASR, TTS, embeddings); converts the LLM into its fast-loading cache."

    def handle(self, *args, **options):
        try:
            self.stdout.write(f"LLM ready: {get_engine().name}")
            self.stdout.write(f"ASR ready: {get_asr_engine().name}")
            get_tts_engines()
            self.stdout.write("TTS ready: Piper (default voice)")
            self.stdout.write(f"Embeddings ready: {get_embedder().name}")
        except EngineConfigError as exc:
            raise CommandError(str(exc)) from exc
