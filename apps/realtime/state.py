"""Per-socket state: the turn in flight and the audio a client is sending."""

import asyncio
import time
import uuid
from dataclasses import dataclass, field

from django.conf import settings

from apps.core.audio import PCM_RATE
from apps.core.errors import AppError
from apps.realtime import protocol as p


class ClientError(AppError):
    """Raised anywhere in a handler; becomes one `error` frame and the socket stays open."""

    def __init__(self, code: str, message: str, close_code: int | None = None, *, retry_after: float | None = None):
        super().__init__(code, message)
        self.close_code = close_code
        self.retry_after = retry_after  # seconds, for rate limits


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
    waiting: dict[int, list] = field(default_factory=dict)  # seq → TurnUnit events not yet playable
    units: list[tuple[float, str]] = field(default_factory=list)  # (start in the reply's audio, s; text)
    audio_s: float = 0.0  # seconds of reply audio sent so far
    failed: bool = False
    first_audio_at: float | None = None
    last_audio_at: float | None = None
    deltas: list[str] = field(default_factory=list)  # `text_delta`s sent, for a text reply cut short
    sentences: list[str] = field(default_factory=list)  # `response`s sent
    emotion: str | None = None  # the reply's, once a `response` has told it
    restarts: int | None = None  # replies started on a partial transcript and dropped (None: no partials)
    reply_started_at: float | None = None  # wall clock: the reply was started on a partial transcript then

    def sent(self, frame: p.ServerFrame) -> None:
        """Note reply text this socket has sent to the client (what a stop keeps)."""
        if isinstance(frame, p.TextDelta):
            self.deltas.append(frame.content)
        elif isinstance(frame, p.Response):
            self.sentences.append(frame.content)
            self.emotion = frame.emotion

    @property
    def text_shown(self) -> str:
        """The reply as far as the client was sent it: its deltas (when it asked for them), else its sentences."""
        return "".join(self.deltas).strip() if self.deltas else " ".join(self.sentences)

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
        if self.restarts is not None:
            timings["reply_on_partial"] = self.reply_started_at is not None
            timings["reply_restarts"] = self.restarts
        if self.reply_started_at is not None:  # negative: before the end of speech
            timings["reply_started_at_ms"] = round((self.reply_started_at - self.speech_end_at) * 1000, 1)
        return timings


@dataclass
class AudioIn:
    """Audio arriving in a push-to-talk stream or a call: the utterance being captured."""

    buffer: bytearray = field(default_factory=bytearray)

    @staticmethod
    def max_bytes() -> int:
        return int(settings.AUDIO_MAX_UTTERANCE_S * PCM_RATE * 2)


_BURST_S = 2.0  # audio a client may send at once, above the steady rate


@dataclass
class AudioBudget:
    """The socket's allowance of streamed audio: a token bucket refilled at AUDIO_MAX_RATE_FACTOR ×
    real time, holding at most a 2 s burst (or one whole chunk).

    One per socket, kept across streams and calls: restarting either does not refill it.
    """

    tokens: float = -1.0  # bytes of audio allowed now; starts full
    at: float = field(default_factory=time.monotonic)

    @staticmethod
    def capacity() -> float:
        return max(_BURST_S * PCM_RATE * 2, settings.AUDIO_MAX_CHUNK_BYTES)

    def admit(self, pcm: bytes) -> None:
        """Raise ClientError if this chunk breaks the chunk-size or rate limits."""
        if len(pcm) > settings.AUDIO_MAX_CHUNK_BYTES:
            raise ClientError(
                p.ErrorCode.CHUNK_TOO_LARGE, f"Audio chunks are limited to {settings.AUDIO_MAX_CHUNK_BYTES} bytes."
            )
        now, rate = time.monotonic(), settings.AUDIO_MAX_RATE_FACTOR * PCM_RATE * 2
        full = self.capacity()
        self.tokens = full if self.tokens < 0 else min(full, self.tokens + (now - self.at) * rate)
        self.at = now
        if len(pcm) > self.tokens:
            wait = (len(pcm) - self.tokens) / rate if rate > 0 else None
            raise ClientError(
                p.ErrorCode.AUDIO_RATE_EXCEEDED,
                "Audio is arriving faster than real time allows; chunk dropped.",
                retry_after=round(wait, 2) if wait is not None else None,
            )
        self.tokens -= len(pcm)


_BYTES_PER_MS = PCM_RATE * 2 // 1000
_MARGIN_BYTES = 100 * _BYTES_PER_MS  # speech this close to a partial's end may be cut mid-sound


@dataclass
class Partials:
    """Partial transcripts of the utterance being captured, and whether one can stand as the final.

    Positions are bytes into the utterance. The VAD says where the last audio that might be
    speech ends (`voice_end`); a partial that covers it with a margin is the whole transcript.
    """

    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    asked: int = 0  # bytes covered by the partial job in flight; 0 when none is
    asked_last: int = 0  # bytes covered by the latest request
    heard: int = 0  # bytes covered by the latest partial back
    text: str = ""
    voice_end: int = 0
    speculated: int = 0  # replies started on these partials (REPLY_ON_PARTIAL)
    restarts: int = 0  # of those, dropped because the speech went on or the final transcript differed

    def track(self, size: int, quiet_ms: float) -> bool:
        """Note the utterance's size and its trailing quiet; True when a partial should be asked for now."""
        self.voice_end = max(0, size - int(quiet_ms) * _BYTES_PER_MS)
        if not settings.ASR_PARTIALS or self.asked or self.voice_end <= self.heard:
            return False
        interval, grown_ms = settings.ASR_PARTIAL_INTERVAL_MS, (size - self.asked_last) / _BYTES_PER_MS
        return bool(interval and grown_ms >= interval) or (
            quiet_ms >= settings.ASR_PARTIAL_PAUSE_MS and self.voice_end > self.asked_last
        )

    def ask(self, size: int) -> None:
        self.asked = self.asked_last = size

    def answer(self, covered: int, text: str) -> None:
        self.asked = 0
        if covered:
            self.heard, self.text = covered, text

    def covers(self, size: int) -> bool:
        """Whether the first `size` bytes hold all the speech so far (with a margin)."""
        return size >= self.voice_end + _MARGIN_BYTES

    @property
    def final(self) -> str | None:
        """The latest partial, if it covers all the speech."""
        return self.text if self.heard and self.covers(self.heard) else None

    @property
    def awaited(self) -> bool:
        """The partial in flight will cover all the speech: wait for it rather than transcribe again."""
        return bool(self.asked) and self.covers(self.asked)
