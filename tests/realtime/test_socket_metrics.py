"""What the socket and a turn report to operators: the open-sockets gauge, connects and closes, quota
refusals, error frames by code (this process's registry, as /metrics shows it), and a real text turn's
LLM first-token time on the LLM worker's own metrics port, with the worker's log lines carrying the turn id."""

import asyncio
import json
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings
from prometheus_client import REGISTRY

from apps.accounts.services import token_create
from apps.conversations.models import Message
from tests import memories, stack
from tests.realtime.client import close_all, connect, connected_socket, dumps, open_socket, send_raw, until_turn_end
from tests.scrape import scrape, value
from tests.speech import audioeval_clip, silence

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]

LOG_DIR = Path(settings.VAR_DIR) / "logs"


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_sockets_quota_refusals_and_error_frames_are_counted(settings, user, api_key, character):
    settings.QUOTA_SOCKETS_PER_USER = 1
    opened, closed = sample("personatalk_socket_connects_total"), sum_closes()
    open_now = sample("personatalk_sockets_open")
    refusals = sample("personatalk_quota_refusals_total", kind="user")
    limited = sample("personatalk_socket_error_frames_total", code="rate_limited")
    unknown = sample("personatalk_socket_error_frames_total", code="unknown_type")

    await connected_socket(api_key)
    assert sample("personatalk_sockets_open") == open_now + 1
    second = await open_socket()  # the user's second socket: over QUOTA_SOCKETS_PER_USER
    other_key = (await sync_to_async(token_create)(user=user, name="second")).key
    refused = await connect(second, api_key=other_key)
    assert refused["code"] == "rate_limited"
    assert sample("personatalk_quota_refusals_total", kind="user") == refusals + 1
    assert sample("personatalk_socket_error_frames_total", code="rate_limited") == limited + 1

    third = await open_socket()
    answer = await send_raw(third, dumps({"type": "no_such_frame"}))
    assert answer["code"] == "unknown_type"
    assert sample("personatalk_socket_error_frames_total", code="unknown_type") == unknown + 1

    assert sample("personatalk_socket_connects_total") == opened + 3
    assert sample("personatalk_sockets_open") == open_now + 3
    await close_all()
    assert sample("personatalk_sockets_open") == open_now
    assert sum_closes() == closed + 3


def sum_closes() -> float:
    return sum(
        s.value
        for m in REGISTRY.collect()
        if m.name == "personatalk_socket_closes"
        for s in m.samples
        if s.name.endswith("_total")
    )


def log_records(path, turn_id: str) -> list[dict]:
    """The worker's JSON log lines that belong to `turn_id`."""
    records = []
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            if record.get("turn_id") == turn_id:
                records.append(record)
    return records


@pytest.fixture(scope="module")
def metered_llm_worker(live_env):
    """The only worker on queue `llm` while this module runs, so the turn's figures are on its port
    (the session's llm worker has served other modules' turns, and others may still hold the queue)."""
    env = {**live_env, "LOG_FORMAT": "json"}
    with stack.sole_worker(queue="llm", env=env, log_dir=LOG_DIR, name="worker-llm-metered") as proc:
        yield proc


def logs_naming(turn_id: str) -> list[str]:
    """Which workers' logs name `turn_id`: where a turn ran, when a figure is missing."""
    return sorted(p.name for p in LOG_DIR.glob("*.log") if turn_id in p.read_text(errors="replace"))


async def test_a_text_turn_is_timed_on_the_llm_worker_and_its_log_lines_carry_the_turn_id(
    api_key, user, character, metered_llm_worker
):
    llm_worker = metered_llm_worker
    # Something to recall (a user with no memories of the character skips the search, and its figure).
    await sync_to_async(memories.remember)(user, character, "The user said: I live in Lisbon.")
    url = f"http://127.0.0.1:{llm_worker.metrics_port}/metrics"
    labels = {"engine": "scripted", "queue": "llm"}
    before = await asyncio.to_thread(scrape, url)

    comm = await connected_socket(api_key)
    await comm.send_json_to({"type": "message", "content": "How far is the Moon?"})
    frames = await until_turn_end(comm)
    assert frames[-1]["status"] == "complete"
    turn_id = frames[-1]["message_id"]

    after = await asyncio.to_thread(scrape, url)
    count = "personatalk_llm_first_token_seconds_count"
    assert value(after, count, **labels) == value(before, count, **labels) + 1, logs_naming(turn_id)
    assert {k for k, v in after.items() if k[0] == count and v != before.get(k, 0.0)} == {
        (count, frozenset(labels.items()))
    }
    first_token = value(after, "personatalk_llm_first_token_seconds_sum", **labels) - value(
        before, "personatalk_llm_first_token_seconds_sum", **labels
    )
    assert 0 < first_token < 60  # within the reply job's time limit
    retrieval = "personatalk_retrieval_seconds_count"  # the turn searched the user's memories first
    assert (
        value(after, retrieval, engine="all-MiniLM-L6-v2", queue="llm")
        == value(before, retrieval, engine="all-MiniLM-L6-v2", queue="llm") + 1
    )

    for _ in range(50):  # written before the reply's last frames: at most a flush away
        records = log_records(llm_worker.log, turn_id)
        if records:
            break
        await asyncio.sleep(0.1)
    reply = [r for r in records if r["logger"] == "apps.conversations.turns"]
    assert reply and reply[0]["message"].startswith("reply complete in"), records
    assert reply[0]["level"] == "INFO" and reply[0]["session_id"] and "timestamp" in reply[0]


async def stream_realtime(comm, pcm: bytes, frame_ms: int = 20) -> None:
    """A microphone: binary PCM frames at real time."""
    step = 16 * frame_ms * 2
    for i in range(0, len(pcm), step):
        await comm.send_to(bytes_data=pcm[i : i + step])
        await asyncio.sleep(frame_ms / 1000)


async def test_a_voice_call_turn_times_every_stage_where_it_is_measured(api_key, character, llm_worker, voice_worker):
    speech, _ = audioeval_clip("hello_world")
    voice_url = f"http://127.0.0.1:{voice_worker.metrics_port}/metrics"
    edge = {"engine": "silero", "queue": "edge"}
    v2v = {"engine": "scripted", "queue": "edge"}  # the LLM backend of the reply
    tts = {"engine": "piper", "queue": "tts"}
    vad_before = sample("personatalk_vad_end_seconds_count", **edge), sample("personatalk_vad_end_seconds_sum", **edge)
    v2v_before = (
        sample("personatalk_voice_to_voice_seconds_count", **v2v),
        sample("personatalk_voice_to_voice_seconds_sum", **v2v),
    )
    voice_before = await asyncio.to_thread(scrape, voice_url)

    comm = await connected_socket(api_key)
    await comm.send_json_to({"type": "voice_call_start"})
    assert (await comm.receive_json_from(timeout=5))["type"] == "voice_call_listening"
    sender = asyncio.create_task(stream_realtime(comm, silence(0.5) + speech + silence(1.0)))
    frames = [await comm.receive_json_from(timeout=30)]
    while frames[-1]["type"] != "turn_end":
        frames.append(await comm.receive_json_from(timeout=30))
    await sender
    assert frames[-1]["status"] == "complete"

    # the edge: the VAD's end of speech, then the reply's first audio (the saved turn's own figure)
    assert sample("personatalk_vad_end_seconds_count", **edge) == vad_before[0] + 1
    heard_after_speech = sample("personatalk_vad_end_seconds_sum", **edge) - vad_before[1]
    assert 0.45 <= heard_after_speech < 1.0  # VAD_SILENCE_MS, to the next 32 ms window
    assert sample("personatalk_voice_to_voice_seconds_count", **v2v) == v2v_before[0] + 1
    reply = await Message.objects.aget(pk=frames[-1]["message_id"])
    spent = sample("personatalk_voice_to_voice_seconds_sum", **v2v) - v2v_before[1]
    assert spent == pytest.approx(reply.timings["first_audio_at_ms"] / 1000, abs=0.001)

    # the voice worker: the transcript (a partial that covered all the speech, or the final pass) and
    # the first spoken unit
    voice_after = await asyncio.to_thread(scrape, voice_url)
    transcribed = sum(
        value(voice_after, "personatalk_asr_seconds_count", engine="faster-whisper", queue=q)
        - value(voice_before, "personatalk_asr_seconds_count", engine="faster-whisper", queue=q)
        for q in ("asr", "asr_partial")
    )
    assert transcribed >= 1
    first_audio = "personatalk_tts_first_audio_seconds_count"
    assert value(voice_after, first_audio, **tts) == value(voice_before, first_audio, **tts) + 1
