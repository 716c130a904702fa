"""Silence at the edge's VAD: windows below VAD_GATE_DBFS are not run through the model, nor sent to
its thread, and speech is found where the model alone finds it."""

import asyncio
import subprocess
import sys
import threading

import numpy as np
import pytest
from django.test import override_settings

import apps.realtime.vad as vad_module
from apps.realtime.vad import StreamingVad
from tests import stack
from tests.speech import audioeval_clip, silence


class CountedRuns:
    """The process's VAD session, each run counted with the thread it ran on."""

    def __init__(self):
        self.session, self.threads = vad_module._session(), []

    def run(self, *args, **kwargs):
        self.threads.append(threading.get_ident())
        return self.session.run(*args, **kwargs)


def frames_of(audio: bytes) -> list[bytes]:
    return [audio[i : i + 640] for i in range(0, len(audio), 640)]  # a microphone's 20 ms frames


def events(vad: StreamingVad, frames: list[bytes]) -> list[tuple[str, float]]:
    return [(e.kind, e.at_ms) for frame in frames for e in vad.feed(frame)]


def test_silence_skips_the_model_and_speech_is_found_as_the_model_alone_finds_it(monkeypatch):
    runs = CountedRuns()
    monkeypatch.setattr(vad_module, "_session", lambda: runs)
    speech, _ = audioeval_clip("quick_brown_fox")
    frames = frames_of(silence(1.0) + speech + silence(1.5) + speech + silence(1.0))

    alone = events(StreamingVad(gate_rms=0.0), frames)
    model_windows = len(runs.threads)
    runs.threads.clear()
    gated = StreamingVad()  # -60 dBFS
    found = events(gated, frames)

    assert [kind for kind, _ in found] == [kind for kind, _ in alone] == ["speech_start", "speech_end"] * 2
    assert all(abs(a - b) <= 64 for (_, a), (_, b) in zip(found, alone, strict=True))  # within two windows
    assert len(runs.threads) < model_windows - 100  # 3.5 s of silence: ~109 windows the model did not run
    assert gated.position_ms == model_windows * 32  # every window counted, run or not

    # a quiet room (noise at -70 dBFS) is silence too; noise at -40 dBFS is heard by the model
    rng = np.random.default_rng(7)
    for dbfs, heard in ((-70, False), (-40, True)):
        noise = rng.normal(0, 10 ** (dbfs / 20) * 32768, 16000).clip(-32768, 32767).astype(np.int16)
        runs.threads.clear()
        assert events(StreamingVad(), frames_of(noise.tobytes())) == []
        assert bool(runs.threads) is heard


def test_a_silent_frame_never_leaves_the_event_loop(monkeypatch):
    runs = CountedRuns()
    monkeypatch.setattr(vad_module, "_session", lambda: runs)
    handed = []
    executor = vad_module._thread()

    class Counted:
        def submit(self, *args, **kwargs):
            handed.append(args)
            return executor.submit(*args, **kwargs)

    monkeypatch.setattr(vad_module, "_thread", lambda: Counted())
    speech, _ = audioeval_clip("hello_world")

    async def call(audio: bytes):
        vad = StreamingVad()
        return [e.kind for frame in frames_of(audio) for e in await vad.feed_async(frame)]

    assert asyncio.run(call(silence(2.0))) == []
    assert handed == [] and runs.threads == []
    assert asyncio.run(call(silence(0.5) + speech + silence(0.8))) == ["speech_start", "speech_end"]
    assert handed and threading.get_ident() not in runs.threads  # speech: the model, on its thread


@override_settings(VAD_GATE_DBFS=float("-inf"))
def test_minus_infinity_runs_the_model_on_every_window(monkeypatch):
    runs = CountedRuns()
    monkeypatch.setattr(vad_module, "_session", lambda: runs)
    vad = StreamingVad.from_settings()
    assert vad.gate_rms == 0.0
    vad.feed(silence(1.0))
    assert len(runs.threads) == 31  # 1 s = 31 whole windows of 32 ms, digital silence included


@pytest.mark.parametrize(
    ("value", "read"),
    [("-inf", "-inf"), ("-55.5", "-55.5"), (None, "-60.0"), ("3", None), ("loud", None)],
)
def test_the_gate_setting_takes_db_below_full_scale_or_minus_infinity(value, read, tmp_path):
    """Above 0 dBFS every window would be silence (a call that never hears speech): refused at start."""
    env = {"SECRET_KEY": "k", "PERSONATALK_VAR_DIR": str(tmp_path), "VAD_GATE_DBFS": value}
    out = subprocess.run(
        [sys.executable, "-c", "import personatalk.settings as s; print(s.VAD_GATE_DBFS)"],
        cwd=stack.ROOT,
        env=stack.merged_env(env),
        capture_output=True,
        text=True,
        timeout=60,
    )
    if read is None:
        assert out.returncode != 0 and f"VAD_GATE_DBFS='{value}'" in out.stderr
    else:
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == read
