"""The header probe and the capped decoder, in process: every hostile file gets its documented code."""

import resource
import signal
import subprocess

import pytest
from django.test import override_settings

from apps.core.audio import AudioError, probe
from apps.realtime.protocol import ErrorCode
from tests.audio.corpus import SILENCE_71, encode_file, ffmpeg, hostile, wav
from tests.speech import ALSA_SOUNDS
from workers import audio as audio_worker
from workers.audio import PCM_RATE, decode_to_pcm


def code_of(fn, *args, **kwargs) -> str | None:
    try:
        fn(*args, **kwargs)
    except AudioError as exc:
        assert exc.message
        return exc.code
    return None


@pytest.fixture
def decoders(monkeypatch):
    """Every ffmpeg child `decode_to_pcm` starts, to read how it ended."""
    started = []
    popen = subprocess.Popen

    def recording(args, *rest, **kwargs):
        child = popen(args, *rest, **kwargs)
        if args[0] == "ffmpeg":
            started.append(child)
        return child

    monkeypatch.setattr(audio_worker.subprocess, "Popen", recording)
    return started


@pytest.mark.parametrize("case", hostile(), ids=lambda c: c.name)
def test_each_hostile_file_gets_its_code_from_the_header_or_the_capped_decode(case, decoders):
    assert case.code in ErrorCode.DESCRIPTIONS  # a documented code
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    at_edge = code_of(probe, case.data, max_s=30)
    assert at_edge == (case.code if case.edge else None)
    assert code_of(decode_to_pcm, case.data, max_s=30) == case.code  # the worker's decode: the probe first
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 50 * 1024  # KiB
    if case.edge:
        assert decoders == []  # the header alone, no decoder started
    elif case.code == "utterance_too_long":  # stopped at the cap: 30 of the file's 120 s, not all of it
        (capped,) = decoders
        assert capped.returncode == -signal.SIGKILL  # killed mid-file, not run to its end
        assert len(decode_to_pcm(case.data, max_s=1000)) > 119 * PCM_RATE * 2  # the whole file: 120 s
        assert decoders[1].returncode == 0


def test_a_wav_that_declares_more_than_the_limit_is_refused_before_it_is_read():
    long_wav = wav(8000, 1, bytes(8000 * 2 * 3))  # 3 s of 16-bit samples
    assert code_of(probe, long_wav, max_s=2) == "utterance_too_long"
    assert code_of(probe, long_wav, max_s=4) is None


@pytest.mark.parametrize(
    "fmt, args",
    [
        ("wav", ()),
        ("flac", ()),
        ("ogg", ("-c:a", "libopus")),
        ("ogg", ("-c:a", "libvorbis")),
        ("mp3", ()),
        ("webm", ("-c:a", "libopus")),
        ("wav", ("-c:a", "pcm_f32le", "-ac", "2", "-ar", "44100")),
    ],
)
def test_accepted_containers_are_measured_and_decoded(fmt, args):
    source = (ALSA_SOUNDS / "Front_Center.wav").read_bytes()  # 1.43 s of speech
    data = encode_file(source, fmt, *args)
    info = probe(data, max_s=30)
    assert info.channels in (1, 2) and 8000 <= info.rate <= 48000
    assert info.duration_s is None or info.duration_s == pytest.approx(1.43, abs=0.1)
    pcm = decode_to_pcm(data, max_s=30)
    assert len(pcm) / 32000 == pytest.approx(1.43, abs=0.1)


def test_the_decode_cap_stops_long_audio_whose_header_does_not_say():
    streamed = ffmpeg("sine=f=300:r=16000", 5, "flac", seekable=False)  # no length in STREAMINFO
    assert probe(streamed, max_s=2).duration_s is None
    assert code_of(decode_to_pcm, streamed, max_s=2) == "utterance_too_long"
    assert len(decode_to_pcm(streamed, max_s=6)) == 5 * 16000 * 2


def test_a_stereo_wav_is_resampled_block_by_block_to_the_cap():
    stereo = encode_file(ffmpeg("sine=f=300:r=44100", 3, "wav"), "wav", "-ac", "2")
    assert len(decode_to_pcm(stereo, max_s=5)) == pytest.approx(3 * 16000 * 2, abs=64)
    assert code_of(decode_to_pcm, stereo, max_s=2) == "utterance_too_long"


def test_ffmpeg_is_killed_at_the_deadline(decoders):
    streamed = ffmpeg(SILENCE_71, 30, "flac", seekable=False)
    with override_settings(AUDIO_DECODE_TIMEOUT_S=0.01):
        assert code_of(decode_to_pcm, streamed, max_s=60) == "decode_timeout"
    assert decoders[-1].returncode == -signal.SIGKILL  # stopped, not left to finish the 30 s


def test_ffmpeg_runs_under_the_memory_limit():
    tone = ffmpeg("sine=f=300:r=16000", 1, "flac")
    with override_settings(AUDIO_DECODE_MEMORY_MB=32):  # too little for ffmpeg to even load: the limit is real
        assert code_of(decode_to_pcm, tone, max_s=5) == "corrupt_audio"
    assert len(decode_to_pcm(tone, max_s=5)) == 16000 * 2


def test_ffmpeg_reads_only_the_probed_container_from_the_pipe():
    from workers.audio import _ffmpeg

    playlist = f"ffconcat version 1.0\nfile {ALSA_SOUNDS / 'Front_Center.wav'}\n".encode()
    for container in ("wav", "flac", "ogg", "mp3", "matroska"):  # forced demuxer: never the concat playlist
        try:
            pcm = _ffmpeg(playlist, container, 16000, 16000 * 2 * 30, 30)
        except AudioError as exc:
            assert exc.code == "corrupt_audio"
        else:
            assert len(pcm) < 16000  # at most a sliver of noise from the text itself, never the 1.4 s file
