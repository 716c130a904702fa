from django.core.management.base import BaseCommand, CommandError

from workers.asr.engine import get_asr_engine
from workers.llm.engines import EngineConfigError, get_engine
from workers.tts.engine import get_tts_engines


class Command(BaseCommand):
    help = "Check and load the configured models (LLM, ASR, TTS); converts the LLM into its fast-loading cache."

    def handle(self, *args, **options):
        try:
            self.stdout.write(f"LLM ready: {get_engine().name}")
            self.stdout.write(f"ASR ready: {get_asr_engine().name}")
            get_tts_engines()
            self.stdout.write("TTS ready: Piper (default voice)")
        except EngineConfigError as exc:
            raise CommandError(str(exc)) from exc
