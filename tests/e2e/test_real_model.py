"""End to end with the real SmolLM2 model over a real WebSocket: scaled, embedded and OpenAI paths."""

import asyncio
import base64
import json
import re
import sqlite3
import time
import uuid

import pytest
import websockets
from django.conf import settings

from apps.accounts.services import token_create
from apps.characters.models import Character
from apps.conversations.models import Message
from apps.memory.models import Memory
from tests import stack
from tests.conftest import LOG_DIR
from tests.realtime.client import server_frame_check
from tests.speech import audioeval_clip, words

pytestmark = [pytest.mark.model, pytest.mark.django_db(transaction=True)]


async def talk(url: str, token: str, character: str, lines: list) -> list[list[dict]]:
    """Connect, say each line (text, or PCM bytes spoken as a whole utterance), return each turn's frames."""
    turns = []
    async with websockets.connect(url.replace("http", "ws", 1) + "/ws", max_size=None) as ws:
        await ws.send(
            json.dumps({"type": "connect", "api_token": token, "character_name": character, "text_deltas": True})
        )
        assert server_frame_check(json.loads(await asyncio.wait_for(ws.recv(), 30)))["type"] == "connected"
        for line in lines:
            if isinstance(line, bytes):
                await ws.send(json.dumps({"type": "audio_message", "audio_base64": base64.b64encode(line).decode()}))
            else:
                await ws.send(json.dumps({"type": "message", "content": line}))
            frames = []
            while not frames or frames[-1]["type"] != "turn_end":
                frames.append(server_frame_check(json.loads(await asyncio.wait_for(ws.recv(), 120))))
            turns.append(frames)
    return turns


def assert_real_reply(frames: list[dict]) -> str:
    kinds = [f["type"] for f in frames]
    assert kinds[:2] == ["thinking", "llm_start"], kinds
    assert kinds[-2:] == ["llm_end", "turn_end"], kinds
    return assert_reply_text(frames)


def assert_spoken_reply(frames: list[dict], heard: set[str]) -> str:
    """A voice turn with the real models: transcript, reply text, and speech that starts early."""
    kinds = [f["type"] for f in frames]
    assert kinds[0] == "asr_start" and kinds[-2:] == ["audio_end", "turn_end"], kinds
    assert heard <= set(words(next(f["text"] for f in frames if f["type"] == "asr_end")))
    pcm = b"".join(base64.b64decode(f["audio_base64"]) for f in frames if f["type"] == "audio_chunk")
    assert len(pcm) / 32000 > 0.5
    return assert_reply_text(frames)


def assert_reply_text(frames: list[dict]) -> str:
    kinds = [f["type"] for f in frames]
    assert "error" not in kinds, frames
    assert frames[-1]["status"] == "complete"
    sentences = [f["content"] for f in frames if f["type"] == "response"]
    deltas = "".join(f["content"] for f in frames if f["type"] == "text_delta")
    assert sentences and all(s.strip() for s in sentences)
    assert not re.match(r"\s*[\[(*]\w+[\])*]", deltas), "emotion tag leaked into the text"
    assert " ".join(deltas.split()) == " ".join(" ".join(sentences).split())
    return deltas.strip()


def assert_saved(frames, reply: str) -> None:
    saved = Message.objects.get(pk=frames[-1]["message_id"])
    assert saved.role == "assistant" and saved.status == "complete"
    assert " ".join(saved.content.split()) == " ".join(reply.split())
    assert saved.timings["first_token_ms"] > 0


@pytest.fixture
def nova(user):
    Character.objects.create(
        name="Nova",
        slug="nova",
        is_published=True,
        greeting="Hi! I'm Nova. Ask me about the stars.",
        persona="You are Nova, a cheerful astronomy guide. You answer in one or two short sentences.",
    )
    return token_create(user=user, name="e2e").key


@pytest.fixture(scope="module")
def scaled_stack(live_env):
    env = {
        **live_env,
        "REDIS_URL": "redis://127.0.0.1:6379/12",
        "LLM_BACKEND": "transformers",
        "LLM_SEED": "7",
        "LLM_MAX_NEW_TOKENS": "48",
    }
    worker = stack.start_worker(queues="llm", env=env, log_dir=LOG_DIR, name="e2e-llm", timeout=300)
    voice = stack.start_worker(queues="asr,tts", env=env, log_dir=LOG_DIR, name="e2e-voice")
    memory = stack.start_worker(queues="embed", env=env, log_dir=LOG_DIR, name="e2e-memory")
    daphne, url = stack.start_daphne(env=env, log_dir=LOG_DIR)
    yield url
    daphne.stop()
    worker.stop()
    voice.stop()
    memory.stop()


def test_scaled_stack_multi_turn_with_smollm2(scaled_stack, nova, user):
    speech, _ = audioeval_clip("quick_brown_fox")
    first = asyncio.run(talk(scaled_stack, nova, "nova", ["Hello! My name is Ana. What is your name?"]))
    for _ in range(100):  # remembered after the turn, by the embed worker
        if Memory.objects.filter(user=user).exclude(kind="promise").exists():
            break
        time.sleep(0.1)
    assert Memory.objects.exclude(kind="promise").get(user=user).text == "The user said: My name is Ana."
    turns = first + asyncio.run(talk(scaled_stack, nova, "nova", ["Do you remember my name?", speech]))
    for frames in turns[:2]:
        assert_saved(frames, assert_real_reply(frames))
    assert_saved(turns[2], assert_spoken_reply(turns[2], {"quick", "brown", "fox"}))
    recalled = Message.objects.get(pk=turns[1][-1]["message_id"])
    name = Memory.objects.exclude(kind="promise").get(user=user)  # (a sampled reply may also promise something)
    assert str(name.pk) in recalled.memories_used  # in the prompt SmolLM2 answered
    session = recalled.session
    assert [m.role for m in session.messages.order_by("created_at")] == ["assistant"] + ["user", "assistant"] * 3
    # One pool process, so the worker's KV cache still holds the session: turn 2 reuses at least the persona.
    assert recalled.timings["cached_tokens"] > 0
    assert recalled.timings["prefill_tokens"] + recalled.timings["cached_tokens"] == recalled.timings["prompt_tokens"]


def test_embedded_mode_one_process_with_smollm2(tmp_path):
    """What `make run` serves: SQLite, in-process layer and tasks, demo data, the real model."""
    env = {
        "DJANGO_SETTINGS_MODULE": "personatalk.settings",
        "PERSONATALK_VAR_DIR": str(tmp_path),
        "LLM_CACHE_DIR": str(settings.LLM_CACHE_DIR),
        "LLM_MAX_NEW_TOKENS": "40",
        **{
            k: None
            for k in (
                "DATABASE_URL",
                "REDIS_URL",
                "SECRET_KEY",
                "TASKS_IN_PROCESS",
                "LLM_BACKEND",
                "DEMO_API_TOKEN",
                "CHROMA_URL",
            )
        },
    }
    stack.manage("migrate", "--noinput", env=env)
    stack.manage("seed_demo", env=env)
    stack.manage("seed_demo", env=env)  # idempotent
    # As `make run` starts it: the models are loaded before the port opens.
    daphne, url = stack.start_daphne(env={**env, "WARM_MODELS": "true"}, log_dir=LOG_DIR, timeout=300)
    assert "models warm in" in daphne.log.read_text()
    try:
        speech, _ = audioeval_clip("hello_world")
        turns = asyncio.run(talk(url, "pt-demo-embedded-token", "nova", ["Hi there! I really love jazz music."]))
        db = sqlite3.connect(tmp_path / "personatalk.sqlite3")
        for _ in range(200):  # the memory job runs in a thread of the web process after the turn
            if db.execute("select count(*) from memory_memory").fetchone()[0]:
                break
            time.sleep(0.1)
        turns += asyncio.run(talk(url, "pt-demo-embedded-token", "nova", ["What music do I like?", speech]))
    finally:
        daphne.stop()
    for frames in turns[:2]:
        assert_real_reply(frames)
    assert_spoken_reply(turns[2], {"hello", "world"})
    # SmolLM2 samples its replies: one may promise ("I'll remember that"), which is a memory too
    ((memory_id, text),) = db.execute("select id, text from memory_memory where kind != 'promise'").fetchall()
    assert text == "The user said: I really love jazz music."
    used = db.execute(
        "select memories_used from conversations_message where id = ?", (turns[1][-1]["message_id"].replace("-", ""),)
    ).fetchone()[0]
    assert str(uuid.UUID(memory_id)) in json.loads(used)
    assert (tmp_path / "chroma").is_dir()  # the embedded index: a local directory


def test_openai_compatible_backend_through_the_socket(live_env, nova):
    """The worker talks to an OpenAI-compatible server (here serving SmolLM2) instead of a local model."""
    from tests.workers.openai_server import serve
    from workers.llm.engines import TransformersEngine

    engine = TransformersEngine.from_settings()
    server_url, stop_server = serve(engine)
    env = {
        **live_env,
        "REDIS_URL": "redis://127.0.0.1:6379/11",
        "LLM_BACKEND": "openai",
        "OPENAI_BASE_URL": server_url,
        "OPENAI_MODEL": "smollm2",
        "LLM_MAX_NEW_TOKENS": "40",
    }
    worker = stack.start_worker(queues="llm", env=env, log_dir=LOG_DIR, name="e2e-openai")
    daphne, url = stack.start_daphne(env=env, log_dir=LOG_DIR)
    try:
        (frames,) = asyncio.run(talk(url, nova, "nova", ["What is a comet?"]))
    finally:
        daphne.stop()
        worker.stop()
        stop_server()
    assert_saved(frames, assert_real_reply(frames))
