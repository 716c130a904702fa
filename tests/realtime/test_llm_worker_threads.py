"""One LLM worker with a server engine streams many turns at once: a real Celery worker with
LLM_BACKEND=openai (so Celery's threads pool, personatalk/celery.py) against the test suite's
fixed-rate OpenAI-compatible server, which streams the scripted engine's reply at 10 tokens/s.

Turns submitted together overlap, each socket hears only its own reply, a stopped turn stops alone,
and a turn past the soft time limit (the scripted engine's "dawdle", 500 ms a word) fails alone.
"""

import asyncio
import re
import time
import uuid
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings

from apps.accounts.services import token_create
from tests import stack
from tests.realtime.client import connected_socket, types
from tests.workers.openai_server import FixedRateEngine, serve
from workers.llm.engines import ScriptedEngine

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]

LOG_DIR = Path(settings.VAR_DIR) / "logs"
TOKENS_PER_S, FIRST_TOKEN_S = 10.0, 0.1
SOFT_S = 3  # a normal reply (~10 pieces) streams in ~1 s; "dawdle" takes 500 ms a piece
DAWDLE = "please dawdle for a while longer now"  # 14 pieces: 7 s in full
THREADS = 8


@pytest.fixture(scope="module")
def threaded_llm_worker(live_env):
    """The only worker on queue `llm` while this module runs."""
    url, stop_server = serve(FixedRateEngine(ScriptedEngine(), tokens_per_s=TOKENS_PER_S, first_token_s=FIRST_TOKEN_S))
    env = {
        **live_env,
        "LLM_BACKEND": "openai",
        "OPENAI_BASE_URL": url,
        "LLM_WORKER_CONCURRENCY": str(THREADS),
        "LLM_SOFT_TIME_LIMIT_S": str(SOFT_S),
        "MEMORY_EXTRACTION": "false",
    }
    # Started as the Procfile starts it (one prefork process named): the server engine lifts it to threads.
    try:
        with stack.sole_worker(queue="llm", env=env, log_dir=LOG_DIR, name="worker-llm-threads") as proc:
            yield proc
    finally:
        stop_server()


async def own_session_socket(user):
    """A socket with a token and a session of its own (a token holds one socket; sockets of one user
    and character otherwise share the latest session)."""
    token = await sync_to_async(token_create)(user=user, name=f"device {uuid.uuid4().hex[:8]}")
    comm = await connected_socket(token.key, text_deltas=True)
    await comm.send_json_to({"type": "clear_history"})
    while (await comm.receive_json_from(timeout=5))["type"] != "history_cleared":
        pass
    return comm


class Turn:
    """One socket's turn as its client saw it: frames, and when text began and the turn ended."""

    def __init__(self, comm, content: str):
        self.comm, self.content = comm, content
        self.frames: list[dict] = []
        self.first_text_at = self.ended_at = None

    async def run(self) -> "Turn":
        await self.comm.send_json_to({"type": "message", "content": self.content})
        await self.read()
        return self

    async def read(self) -> None:
        while not self.frames or self.frames[-1]["type"] != "turn_end":
            self.frames.append(await self.comm.receive_json_from(timeout=30))
            if self.frames[-1]["type"] == "text_delta" and self.first_text_at is None:
                self.first_text_at = time.monotonic()
        self.ended_at = time.monotonic()

    @property
    def text(self) -> str:
        return "".join(f["content"] for f in self.frames if f["type"] == "text_delta").strip()

    @property
    def status(self) -> str:
        return self.frames[-1]["status"]


def reply_to(content: str) -> str:
    return f"You said: {content}. I am Nova. Anything else?"


def streaming_s(content: str) -> float:
    """How long the server takes to stream the scripted reply to `content`: its pieces at the fixed rate."""
    pieces = re.findall(r"\S+\s*", f"[happy] {reply_to(content)}")
    return FIRST_TOKEN_S + (len(pieces) - 1) / TOKENS_PER_S


async def test_turns_sent_together_stream_at_once_each_to_its_own_socket(threaded_llm_worker, user, character):
    contents = [f"tell me about star number {n}" for n in range(4)]
    comms = [await own_session_socket(user) for _ in contents]
    started = time.monotonic()
    turns = await asyncio.gather(*(Turn(comm, content).run() for comm, content in zip(comms, contents, strict=True)))
    wall = time.monotonic() - started

    for turn in turns:
        assert turn.status == "complete", turn.frames
        assert turn.text == reply_to(turn.content)  # its own reply, whole, and nobody else's words
    streaming = [(turn.first_text_at, turn.ended_at) for turn in turns]
    assert max(start for start, _ in streaming) < min(end for _, end in streaming)  # all four streamed at once
    # One after another they would take the server's streaming time four times over (~5.6 s) plus each
    # turn's own work; at once ~1.5 s on a fast machine, 2.8 s on a loaded CI box.
    one_turn_s = streaming_s(contents[0])
    assert wall < len(turns) * one_turn_s, f"{wall:.2f} s for {len(turns)} turns of {one_turn_s} s"
    assert f"{THREADS} turns at once (threads pool)" in threaded_llm_worker.log.read_text()


async def test_stopping_one_turn_stops_only_that_one(threaded_llm_worker, user, character):
    comms = [await own_session_socket(user) for _ in range(3)]
    turns = [Turn(comm, f"tell me a long story {n}") for n, comm in enumerate(comms)]
    for turn in turns:
        await turn.comm.send_json_to({"type": "message", "content": turn.content})
    stopped, *others = turns
    while not stopped.text:  # stop it mid-reply
        stopped.frames.append(await stopped.comm.receive_json_from(timeout=30))
    await stopped.comm.send_json_to({"type": "stop"})
    await asyncio.gather(*(turn.read() for turn in turns))

    assert types(stopped.frames)[-2:] == ["interrupted", "turn_end"] and stopped.status == "interrupted"
    assert "Anything else" not in stopped.text
    for turn in others:
        assert turn.status == "complete" and turn.text == reply_to(turn.content), turn.frames


async def test_a_turn_past_the_time_limit_fails_alone(threaded_llm_worker, user, character):
    comms = [await own_session_socket(user) for _ in range(3)]
    late, *others = [Turn(comm, content) for comm, content in zip(comms, [DAWDLE, "hi one", "hi two"], strict=True)]
    started = time.monotonic()
    await asyncio.gather(late.run(), *(turn.run() for turn in others))

    errors = [f for f in late.frames if f["type"] == "error"]
    assert [(e["code"], e["message"]) for e in errors] == [("llm_failed", "The reply took too long and was stopped.")]
    assert late.status == "failed" and "Anything else" not in late.text
    assert late.ended_at - started < 14 * 0.5 - 1  # stopped at the limit, not finished late
    for turn in others:
        assert turn.status == "complete" and turn.text == reply_to(turn.content), turn.frames
        assert not [f for f in turn.frames if f["type"] == "error"]
        assert turn.ended_at < late.ended_at  # they did not wait for it
