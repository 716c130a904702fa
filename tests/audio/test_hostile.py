"""Hostile audio against the real stack: a Daphne process, a real ASR worker, measured from outside.

Each hostile file must get its documented error code within 1 s, and neither the serving Daphne
process nor the ASR worker may grow its peak memory (VmHWM, reset before each case) by 50 MB.
Run with -s to see the table of figures.
"""

import asyncio
import base64
import json
import time
from pathlib import Path

import httpx
import pytest
import redis
import websockets
from django.conf import settings as django_settings

from tests import stack
from tests.audio.corpus import SILENCE_71, Case, encode_file, ffmpeg, hostile, wav
from tests.conftest import LOG_DIR
from tests.speech import ALSA_SOUNDS, words

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("llm_worker")]

MB = 1024 * 1024
TABLE: list[str] = []


@pytest.fixture(scope="module")
def daphne(live_env):
    # Dozens of uploads from one user: the REST speech quota is not what this test is about.
    proc, url = stack.start_daphne(env={**live_env, "QUOTA_SPEECH_REQUESTS": "0"}, log_dir=LOG_DIR)
    yield proc, url
    proc.stop()
    print("\n" + "\n".join(TABLE))


class Peak:
    """How far the peak resident memory of a process, or of any process under it (a prefork worker's
    pool process does the work), grew since `reset` (Linux clear_refs 5 resets a peak to the current size)."""

    def __init__(self, pid: int):
        self.pid = pid
        self.base: dict[int, int] = {}

    def _tree(self) -> list[int]:
        pids, i = [self.pid], 0
        while i < len(pids):
            children = Path(f"/proc/{pids[i]}/task/{pids[i]}/children")
            pids += [int(c) for c in children.read_text().split()] if children.exists() else []
            i += 1
        return pids

    @staticmethod
    def _hwm(pid: int) -> int:
        status = Path(f"/proc/{pid}/status").read_text().splitlines()
        return int(next(line for line in status if line.startswith("VmHWM:")).split()[1]) * 1024

    def reset(self) -> int:
        """Start measuring now; returns 0, the growth so far."""
        self.base = {}
        for pid in self._tree():
            Path(f"/proc/{pid}/clear_refs").write_text("5")
            self.base[pid] = self._hwm(pid)
        return 0

    def hwm(self) -> int:
        """The largest growth of one process of the tree since `reset` (a new process counts from 0)."""
        grown = 0
        for pid in self._tree():
            try:
                grown = max(grown, self._hwm(pid) - self.base.get(pid, 0))
            except (OSError, StopIteration):  # exited meanwhile
                continue
        return grown


async def _connected(url: str, token: str):
    ws = await websockets.connect(url.replace("http", "ws", 1) + "/ws", max_size=None)
    await ws.send(json.dumps({"type": "connect", "api_token": token, "character_name": "nova"}))
    assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "connected"
    return ws


async def _until(ws, kinds: set[str], timeout: float = 60) -> list[dict]:
    frames = []
    while not frames or frames[-1]["type"] not in kinds:
        frames.append(json.loads(await asyncio.wait_for(ws.recv(), timeout)))
    return frames


def _utterances() -> set[bytes]:
    """Utterance keys in the cache the workers share (Redis)."""
    return set(redis.Redis.from_url(django_settings.REDIS_URL).keys("*utterance:*"))


def _record(path: str, case: Case, code: str, seconds: float, server: int, worker: int) -> None:
    where = "edge" if case.edge else "worker"
    TABLE.append(
        f"{path:6s} {case.name:46s} {where:6s} {code:20s} {seconds * 1000:7.1f} ms"
        f"  daphne +{server / MB:5.1f} MB  asr worker +{worker / MB:5.1f} MB"
    )


def test_hostile_audio_messages_over_a_real_socket(daphne, voice_worker, api_key, character):
    proc, url = daphne
    server, worker = Peak(proc.popen.pid), Peak(voice_worker.popen.pid)
    before = _utterances()

    async def run():
        ws = await _connected(url, api_key)
        failures = []
        for case in hostile():
            server_before, worker_before = server.reset(), worker.reset()
            started = time.monotonic()
            await ws.send(json.dumps({"type": "audio_message", "audio_base64": base64.b64encode(case.data).decode()}))
            frames = await _until(ws, {"error"})
            seconds = time.monotonic() - started
            if frames[0]["type"] == "asr_start":  # the turn began: it ends right after its error
                frames += await _until(ws, {"turn_end"})
                assert frames[-1]["status"] == "failed"
            code = frames[-1 if frames[-1]["type"] == "error" else -2]["code"]
            grew = server.hwm() - server_before, worker.hwm() - worker_before
            _record("socket", case, code, seconds, *grew)
            if (code, frames[0]["type"] == "error") != (case.code, case.edge) or seconds > 1 or max(grew) > 50 * MB:
                failures.append((case.name, code, round(seconds, 3), [g // MB for g in grew]))
        await ws.send(json.dumps({"type": "ping"}))
        assert json.loads(await asyncio.wait_for(ws.recv(), 5)) == {"type": "pong"}
        await ws.close()
        return failures

    assert asyncio.run(run()) == []
    assert _utterances() - before == set()  # the files the worker refused are gone too


@pytest.mark.parametrize(
    "fmt, args", [("wav", ()), ("flac", ()), ("ogg", ("-c:a", "libopus")), ("mp3", ()), ("webm", ("-c:a", "libopus"))]
)
def test_real_speech_in_every_accepted_container_is_still_heard(
    daphne, voice_worker, speech_api_worker, api_key, character, fmt, args
):
    _, url = daphne
    speech = encode_file((ALSA_SOUNDS / "Front_Center.wav").read_bytes(), fmt, *args)

    async def run():
        ws = await _connected(url, api_key)
        await ws.send(json.dumps({"type": "audio_message", "audio_base64": base64.b64encode(speech).decode()}))
        frames = await _until(ws, {"turn_end"})
        await ws.close()
        return frames

    before = _utterances()
    frames = asyncio.run(run())
    assert [f for f in frames if f["type"] == "error"] == []
    assert {"front", "center"} <= set(words(next(f["text"] for f in frames if f["type"] == "asr_end")))
    response = httpx.post(
        f"{url}/api/asr", files={"audio": (f"speech.{fmt}", speech)}, headers={"Authorization": f"Bearer {api_key}"}
    )
    assert response.status_code == 200, response.text
    assert {"front", "center"} <= set(words(response.json()["text"]))
    assert _utterances() - before == set()  # what the user said left the cache once transcribed


def _rest_cases() -> list[Case]:
    """The REST limit is AUDIO_MAX_UPLOAD_S (300 s): the two-minute files are fine there; ten minutes are not."""
    ten_minutes = ffmpeg(SILENCE_71, 600, "flac")
    return [
        *(case for case in hostile() if case.code != "utterance_too_long"),
        Case("flac 600 s 7.1 192 kHz silence", ten_minutes, "utterance_too_long"),
        Case("ffconcat playlist", b"ffconcat version 1.0\nfile /etc/passwd\n", "unsupported_audio"),
        Case("zero bytes", b"", "empty_audio"),
        Case("wav 400 s of 8 kHz 8-bit", wav(8000, 1, bytes(8000 * 400), bits=8), "utterance_too_long"),
    ]


def test_hostile_uploads_to_api_asr(daphne, speech_api_worker, api_key):
    proc, url = daphne
    server, worker = Peak(proc.popen.pid), Peak(speech_api_worker.popen.pid)
    failures = []
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {api_key}"}, timeout=60) as client:
        for case in _rest_cases():
            server_before, worker_before = server.reset(), worker.reset()
            started = time.monotonic()
            response = client.post("/api/asr", files={"audio": ("upload", case.data)})
            seconds = time.monotonic() - started
            code = response.json()["error"]["code"]
            grew = server.hwm() - server_before, worker.hwm() - worker_before
            _record("rest", case, code, seconds, *grew)
            if (response.status_code, code) != (400, case.code) or seconds > 1 or max(grew) > 50 * MB:
                failures.append((case.name, response.status_code, code, round(seconds, 3), [g // MB for g in grew]))
    assert failures == []


def test_a_streamed_ten_minute_upload_is_cut_at_the_rest_limit(daphne, speech_api_worker, api_key):
    """No length in the header: the ASR worker's decode stops at AUDIO_MAX_UPLOAD_S (300 s)."""
    proc, url = daphne
    server, worker = Peak(proc.popen.pid), Peak(speech_api_worker.popen.pid)
    case = Case("flac 600 s 7.1 192 kHz, streamed", ffmpeg(SILENCE_71, 600, "flac", seekable=False), "", edge=False)
    server_before, worker_before = server.reset(), worker.reset()
    started = time.monotonic()
    response = httpx.post(
        f"{url}/api/asr", content=case.data, headers={"Authorization": f"Bearer {api_key}"}, timeout=60
    )
    seconds = time.monotonic() - started
    grew = server.hwm() - server_before, worker.hwm() - worker_before
    _record("rest", case, response.json()["error"]["code"], seconds, *grew)
    assert (response.status_code, response.json()["error"]["code"]) == (400, "utterance_too_long")
    assert max(grew) < 50 * MB
    assert seconds < 10  # AUDIO_DECODE_TIMEOUT_S: decoding 300 s of 7.1 at 192 kHz is real work, but bounded


@pytest.mark.parametrize(
    "how, over, status, code",
    [
        ("content-length", 60 * MB, 413, "audio_too_large"),  # Daphne's body limit: dropped as it arrives
        ("chunked", 60 * MB, 413, "audio_too_large"),  # no length to check first: counted as it arrives
        ("multipart", 16 * 1024, 413, "audio_too_large"),  # a length within the slack: the counting handler
        ("chunked raw", MB // 2, 413, "audio_too_large"),  # under Daphne's limit: the view's bounded read
        ("chunked multipart", MB // 2, 411, "missing_field"),  # Django would parse it as empty
    ],
)
def test_an_oversized_upload_never_lands_in_memory(daphne, api_key, how, over, status, code, settings):
    proc, url = daphne
    server = Peak(proc.popen.pid)
    size = settings.ASR_MAX_UPLOAD_BYTES + over
    headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "audio/wav"}
    head, tail = b"", b""
    if how.endswith("multipart"):
        headers["Content-Type"] = "multipart/form-data; boundary=xyz"
        head = b'--xyz\r\nContent-Disposition: form-data; name="audio"; filename="a.wav"\r\n\r\n'
        tail = b"\r\n--xyz--\r\n"

    def body():
        yield head
        for _ in range(size // (64 * 1024)):
            yield bytes(64 * 1024)
        yield bytes(size % (64 * 1024))
        yield tail

    server_before = server.reset()
    response = httpx.post(
        f"{url}/api/asr",
        content=body() if how.startswith("chunked") else b"".join(body()),
        headers=headers,
        timeout=120,
    )
    grew = server.hwm() - server_before
    TABLE.append(f"rest   {size / MB:.1f} MB body ({how}): {response.status_code}, daphne +{grew / MB:.1f} MB")
    assert (response.status_code, response.json()["error"]["code"]) == (status, code)
    if over > settings.DATA_UPLOAD_MAX_MEMORY_SIZE - settings.ASR_MAX_UPLOAD_BYTES:
        assert grew < 50 * MB  # past Daphne's body limit: dropped as it arrives, whatever its size
    else:  # under it, Daphne queues the body before Django runs, and the view holds what it counted
        assert grew < 2 * settings.ASR_MAX_UPLOAD_BYTES + 10 * MB


def test_an_upload_at_the_cap_is_still_taken(daphne, speech_api_worker, api_key, settings):
    """The cap refuses only what is over it: a file of exactly ASR_MAX_UPLOAD_BYTES reaches the header check."""
    _, url = daphne
    body = wav(16000, 1, bytes(settings.ASR_MAX_UPLOAD_BYTES - 44))  # 13 min of 16 kHz: too long, not too large
    assert len(body) == settings.ASR_MAX_UPLOAD_BYTES
    response = httpx.post(
        f"{url}/api/asr", files={"audio": ("a.wav", body)}, headers={"Authorization": f"Bearer {api_key}"}, timeout=60
    )
    assert (response.status_code, response.json()["error"]["code"]) == (400, "utterance_too_long")
