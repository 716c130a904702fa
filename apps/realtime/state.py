"""Per-socket state: the turn in flight and the audio a client is sending."""

import asyncio
import time
from dataclasses import dataclass, field

from django.conf import settings

from workers.audio import PCM_RATE


class ClientError(Exception):
    """Raised anywhere in a handler; becomes one `error` frame and the socket stays open."""

    def __init__(self, code: str, message: str, close_code: int | None = None):
        super().__init__(message)
        self.code, self.message, self.close_code = code, message, close_code


@dataclass
class Turn:
    """The turn in flight on this socket, with a watchdog for a worker that goes silent.

    A voice turn also orders the spoken units its TTS jobs send back (they may finish out of
    order) and remembers what was actually sent, for barge-in.
    """

    id: str
    session_id: object
    voice: bool = False
    speech_end_at: float = 0.0  # wall clock, shared with the workers' timings
    last_event: float = field(default_factory=time.monotonic)
    watchdog: asyncio.Task | None = None
    next_seq: int = 0
    units_total: int | None = None
    waiting: dict[int, list[dict]] = field(default_factory=dict)  # seq → unit events not yet playable
    units: list[tuple[float, str]] = field(default_factory=list)  # (start in the reply's audio, s; text)
    audio_s: float = 0.0  # seconds of reply audio sent so far
    failed: bool = False
    first_audio_at: float | None = None
    last_audio_at: float | None = None

    def spoken_by(self, now: float) -> str:
        """The units whose audio the client had started playing by `now` (playing from first audio on)."""
        if self.first_audio_at is None:
            return ""
        played = now - self.first_audio_at
        return " ".join(text for start, text in self.units if start <= played)

    @property
    def playback_end(self) -> float:
        return (self.first_audio_at or 0.0) + self.audio_s

    @property
    def all_units_sent(self) -> bool:
        return self.units_total is not None and self.next_seq >= self.units_total

    def audio_timings(self) -> dict:
        timings = {}
        if self.first_audio_at:
            timings["first_audio_at_ms"] = round((self.first_audio_at - self.speech_end_at) * 1000, 1)
            timings["last_audio_at_ms"] = round((self.last_audio_at - self.speech_end_at) * 1000, 1)
        return timings


@dataclass
class AudioIn:
    """Audio arriving in a push-to-talk stream or a call, with the per-socket limits."""

    started: float = field(default_factory=time.monotonic)
    received: int = 0  # bytes, for the rate limit
    buffer: bytearray = field(default_factory=bytearray)

    def admit(self, pcm: bytes) -> None:
        """Raise ClientError if this chunk breaks the chunk-size or rate limits."""
        if len(pcm) > settings.AUDIO_MAX_CHUNK_BYTES:
            raise ClientError("chunk_too_large", f"Audio chunks are limited to {settings.AUDIO_MAX_CHUNK_BYTES} bytes.")
        allowed = ((time.monotonic() - self.started) * settings.AUDIO_MAX_RATE_FACTOR + 2.0) * PCM_RATE * 2
        if self.received + len(pcm) > allowed:
            raise ClientError("audio_rate_exceeded", "Audio is arriving faster than real time allows; chunk dropped.")
        self.received += len(pcm)

    @staticmethod
    def max_bytes() -> int:
        return int(settings.AUDIO_MAX_UTTERANCE_S * PCM_RATE * 2)
