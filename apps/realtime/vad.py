"""Silero voice activity detection, streamed frame by frame at the edge (the consumer process).

The ONNX file is the one faster-whisper ships. One inference session per process; each socket
keeps its own recurrent state, so calls are cheap (~0.1 ms per 32 ms window on a quiet core).

On the socket, `feed_async` runs the model in one thread of the process's own (ONNX Runtime lets go
of the GIL while it runs), not on the event loop: at 500 sockets with 20 calls, the windows' inference
was over a third of the loop's time, and every other socket's frames waited behind it.

A window quieter than VAD_GATE_DBFS (RMS) is silence without asking the model (its recurrent state
goes on from the last window it heard). A caller is quiet half the time or more (the character is
talking), and the model's windows were a third of a core at 500 sockets with 20 calls on the 2-core
box (2026-12-05, 0.55 ms a window), more than any other part of the web process's work for them.
"""

import asyncio
import functools
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

WINDOW = 512  # samples per inference at 16 kHz (32 ms)
CONTEXT = 64


@functools.lru_cache(maxsize=1)
def _session():
    import onnxruntime
    from faster_whisper.utils import get_assets_path

    opts = onnxruntime.SessionOptions()
    opts.inter_op_num_threads = 1
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 4
    path = os.path.join(get_assets_path(), "silero_vad_v6.onnx")
    return onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"], sess_options=opts)


@functools.lru_cache(maxsize=1)
def _thread() -> ThreadPoolExecutor:
    """The process's VAD thread: one, so windows run in the order they came (a call's frames are fed
    one at a time anyway) and the model's session is never run by two threads at once."""
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="vad")


@dataclass
class VadEvent:
    kind: str  # "speech_start" | "speech_end"
    at_ms: float  # position in the stream


@dataclass
class Fed:
    """One frame through the VAD: its events, and whether speech was going on and the trailing quiet
    (ms) right after it."""

    events: list[VadEvent]
    in_speech: bool
    quiet_ms: float
    position_ms: float  # audio run through the model by then


@dataclass
class StreamingVad:
    """Feed 16 kHz s16le PCM; get speech_start / speech_end events with endpointing.

    Speech starts after `min_speech_ms` above `threshold`; it ends after `silence_ms` below
    `threshold - 0.15` (hysteresis, as Silero recommends).
    """

    threshold: float = 0.5
    min_speech_ms: int = 160
    silence_ms: int = 450
    gate_rms: float = 0.001  # windows below this RMS (full scale 1.0) are silence, unheard by the model
    in_speech: bool = False
    position_ms: float = 0.0  # audio run through the model
    last_voice_ms: float = 0.0  # where the last window that might be speech ended
    _pending: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float32))
    _context: np.ndarray = field(default_factory=lambda: np.zeros(CONTEXT, dtype=np.float32))
    _h: np.ndarray = field(default_factory=lambda: np.zeros((1, 1, 128), dtype=np.float32))
    _c: np.ndarray = field(default_factory=lambda: np.zeros((1, 1, 128), dtype=np.float32))
    _voiced_ms: float = 0.0
    _silent_ms: float = 0.0

    @classmethod
    def from_settings(cls) -> "StreamingVad":
        from django.conf import settings

        return cls(
            threshold=settings.VAD_THRESHOLD,
            min_speech_ms=settings.VAD_MIN_SPEECH_MS,
            silence_ms=settings.VAD_SILENCE_MS,
            gate_rms=10 ** (settings.VAD_GATE_DBFS / 20),
        )

    @property
    def fed_ms(self) -> float:
        """All audio fed so far, including the part waiting for a whole window."""
        return self.position_ms + len(self._pending) / 16

    @property
    def quiet_ms(self) -> float:
        """How long the audio has been without anything that might be speech."""
        return self.fed_ms - self.last_voice_ms

    def probability(self, window: np.ndarray, loud: bool) -> float:
        """The model's speech probability for `window`; 0 for a window below the gate (`loud` False),
        which the model does not hear."""
        if loud:
            x = np.concatenate([self._context, window])[None, :]
            out, self._h, self._c = _session().run(None, {"input": x, "h": self._h, "c": self._c})
        self._context = window[-CONTEXT:]  # the next window's lead-in, heard or not
        return float(out.reshape(-1)[0]) if loud else 0.0

    def loud(self, window: np.ndarray) -> bool:
        """Whether the window is loud enough for the model to hear (RMS at or above the gate)."""
        return float(np.sqrt(np.mean(np.square(window)))) >= self.gate_rms

    async def feed_async(self, pcm: bytes) -> list[VadEvent]:
        """`feed`, with the model run off the event loop (see `feed_frames_async`)."""
        return (await self.feed_frames_async([pcm]))[0].events

    def feed(self, pcm: bytes) -> list[VadEvent]:
        return self._step(self._windows(pcm))

    async def feed_frames_async(self, frames: list[bytes]) -> list[Fed]:
        """Several frames in one go, with the model run off the event loop (one trip to its thread at
        most): what `feed` gives for each, with where the stream stood after it. Frames whose windows
        are all silence (a 20 ms frame that completes none, two times in five, or a quiet one) are
        taken in here at once."""
        taken = [(self._windows(pcm), len(self._pending)) for pcm in frames]
        if any(loud for windows, _ in taken for _, loud in windows):
            return await asyncio.get_running_loop().run_in_executor(_thread(), self._steps, taken)
        return self._steps(taken)

    def _steps(self, taken: list[tuple[list[tuple[np.ndarray, bool]], int]]) -> list[Fed]:
        fed = []
        for windows, pending in taken:
            events = self._step(windows)
            quiet_ms = self.position_ms + pending / 16 - self.last_voice_ms
            fed.append(Fed(events, self.in_speech, quiet_ms, self.position_ms))
        return fed

    def _windows(self, pcm: bytes) -> list[tuple[np.ndarray, bool]]:
        """Take in `pcm`; the whole windows it completes, to run in order, each with whether it is loud."""
        samples = np.frombuffer(pcm, dtype=np.int16).astype(np.float32) / 32768.0
        self._pending = np.concatenate([self._pending, samples])
        whole = len(self._pending) // WINDOW * WINDOW
        windows = [self._pending[i : i + WINDOW] for i in range(0, whole, WINDOW)]
        self._pending = self._pending[whole:]
        return [(window, self.loud(window)) for window in windows]

    def _step(self, windows: list[tuple[np.ndarray, bool]]) -> list[VadEvent]:
        events = []
        step_ms = WINDOW / 16
        for window, loud in windows:
            p = self.probability(window, loud)
            self.position_ms += step_ms
            if p >= self.threshold - 0.15:
                self.last_voice_ms = self.position_ms
            if not self.in_speech:
                self._voiced_ms = self._voiced_ms + step_ms if p >= self.threshold else 0.0
                if self._voiced_ms >= self.min_speech_ms:
                    self.in_speech, self._silent_ms = True, 0.0
                    events.append(VadEvent("speech_start", self.position_ms - self._voiced_ms))
            else:
                self._silent_ms = self._silent_ms + step_ms if p < self.threshold - 0.15 else 0.0
                if self._silent_ms >= self.silence_ms:
                    self.in_speech, self._voiced_ms = False, 0.0
                    events.append(VadEvent("speech_end", self.position_ms - self._silent_ms))
        return events
