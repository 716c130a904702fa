"""Time limits fire: a reply past its soft limit, or an engine hung in native code past its hard
limit, ends the turn with `error` + `turn_end` (failed), and the worker takes the next turn.

A real prefork worker with short limits and the scripted engine, whose "dawdle" reply outlasts the
soft limit and whose "deadlock" blocks for good in libc (deaf to the soft limit's exception).
"""

import time
from pathlib import Path

import psutil
import pytest
from django.conf import settings
from django.test import override_settings

from apps.conversations.models import Message
from tests import stack
from tests.realtime.client import connected_socket, types, until_turn_end

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]

LOG_DIR = Path(settings.VAR_DIR) / "logs"
SOFT_S, HARD_S = 2, 4
FULL_DAWDLE_S = 12 * 0.5  # the scripted reply's words, 500 ms each


@pytest.fixture(scope="module")
def limited_llm_worker(live_env):
    """The only worker on queue `llm` while this module runs."""
    env = {**live_env, "LLM_SOFT_TIME_LIMIT_S": str(SOFT_S), "LLM_HARD_TIME_LIMIT_S": str(HARD_S)}
    try:
        with stack.sole_worker(queue="llm", env=env, log_dir=LOG_DIR, name="worker-llm-limited") as proc:
            yield proc
    finally:
        for pid in helpers_running():  # left by a failed run
            psutil.Process(pid).kill()


def pool_pids(proc: stack.Proc) -> list[int]:
    pid = proc.popen.pid
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def process_exists(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def helpers_running() -> list[int]:
    """The scripted engine's `sleep 3599` helpers still alive (none before the hang)."""
    return [p.pid for p in psutil.process_iter(["cmdline"]) if p.info["cmdline"] == ["sleep", "3599"]]


async def say(comm, content: str, timeout: float = 30) -> list[dict]:
    await comm.send_json_to({"type": "message", "content": content})
    return await until_turn_end(comm, timeout=timeout)


async def assert_next_turn_completes(comm):
    frames = await say(comm, "are you still there")
    assert frames[-1]["status"] == "complete", frames
    reply = " ".join(f["content"] for f in frames if f["type"] == "response")
    assert reply == "You said: are you still there. I am Nova. Anything else?"


async def test_a_reply_past_the_soft_limit_ends_the_turn_and_the_next_turn_is_answered(
    limited_llm_worker, api_key, character
):
    comm = await connected_socket(api_key)
    started = time.monotonic()
    frames = await say(comm, "please dawdle")
    took = time.monotonic() - started
    kinds = types(frames)
    error = next(f for f in frames if f["type"] == "error")
    assert (error["code"], error["message"]) == ("llm_failed", "The reply took too long and was stopped.")
    assert kinds[-2:] == ["llm_end", "turn_end"] and frames[-1]["status"] == "failed", kinds
    assert took < FULL_DAWDLE_S  # stopped, not finished late
    saved = await Message.objects.aget(pk=frames[-1]["message_id"])
    assert (saved.role, saved.status) == ("assistant", "failed")
    assert "Anything else" not in saved.content  # only what was written before the limit
    await assert_next_turn_completes(comm)


async def test_an_engine_hung_in_native_code_is_killed_at_the_hard_limit_and_the_worker_goes_on(
    limited_llm_worker, api_key, character
):
    before = pool_pids(limited_llm_worker)
    assert not helpers_running()
    comm = await connected_socket(api_key)
    frames = await say(comm, "now deadlock")
    kinds = types(frames)
    assert kinds[-2:] == ["error", "turn_end"], kinds
    assert frames[-2]["code"] == "llm_failed" and "took too long" in frames[-2]["message"]
    assert frames[-1]["status"] == "failed"
    saved = await Message.objects.aget(pk=frames[-1]["message_id"])  # saved by the worker's parent
    assert (saved.role, saved.status, saved.content) == ("assistant", "failed", "")
    user_message = await Message.objects.filter(session_id=saved.session_id, role="user").alatest("created_at")
    assert user_message.content == "now deadlock"

    await assert_next_turn_completes(comm)  # waits for the replacement pool process
    after = pool_pids(limited_llm_worker)
    assert len(after) == 1 and after != before  # the hung process was killed and replaced
    assert not process_exists(before[0])
    assert not helpers_running()  # the program the hung engine started died with it
    assert "Hard time limit (4s) exceeded" in limited_llm_worker.log.read_text()


async def test_the_embedded_mode_stops_an_over_long_reply_between_tokens(api_key, character):
    """No worker process to kill there: the streaming loop checks the deadline between tokens."""
    with override_settings(TASKS_IN_PROCESS=True, LLM_SOFT_TIME_LIMIT_S=SOFT_S, MEMORY_EXTRACTION=False):
        comm = await connected_socket(api_key, text_deltas=True)
        frames = await say(comm, "please dawdle")
        error = next(f for f in frames if f["type"] == "error")
        assert (error["code"], error["message"]) == ("llm_failed", "The reply took too long and was stopped.")
        assert frames[-1]["status"] == "failed"
        written = "".join(f["content"] for f in frames if f["type"] == "text_delta")
        assert "Anything else" not in written  # cut off, not finished
