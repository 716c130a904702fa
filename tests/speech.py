"""Real speech for tests: recorded clips with transcripts (pytest-audioeval, alsa-utils) and Piper-made lines."""

import functools
import importlib.util
from pathlib import Path

import numpy as np

from workers.audio import PCM_RATE, decode_to_pcm, resample

ALSA_SOUNDS = Path("/usr/share/sounds/alsa")


def audioeval_clip(name: str) -> tuple[bytes, str]:
    """(16 kHz s16le PCM, transcript) of a recorded English clip shipped by pytest-audioeval."""
    spec = importlib.util.find_spec("pytest_audioeval")
    folder = Path(list(spec.submodule_search_locations)[0]) / "samples" / "audio" / "en"
    return decode_to_pcm((folder / f"{name}.wav").read_bytes()), (folder / f"{name}.txt").read_text().strip()


def alsa_clip(name: str = "Front_Center") -> tuple[bytes, str]:
    """A human recording from Debian's alsa-utils; its transcript is the file name."""
    return decode_to_pcm((ALSA_SOUNDS / f"{name}.wav").read_bytes()), name.replace("_", " ")


@functools.lru_cache(maxsize=32)
def piper_says(text: str) -> bytes:
    """`text` spoken by the shipped Piper voice, as 16 kHz s16le PCM; the same samples every run.

    Without noise (variation 0): Piper's default prosody is random, and a test must not pass or
    fail by how a line happened to be said.
    """
    from workers.tts.engine import TtsEngines, VoiceSpec

    engine = TtsEngines().get(VoiceSpec())
    audio = np.concatenate(list(engine.synthesize(text, speed=1.0, variation=0.0)))
    return resample(audio, engine.sample_rate, PCM_RATE).tobytes()


def silence(seconds: float) -> bytes:
    return np.zeros(int(seconds * PCM_RATE), dtype=np.int16).tobytes()


def words(text: str) -> list[str]:
    return "".join(c.lower() if c.isalnum() else " " for c in text).split()
