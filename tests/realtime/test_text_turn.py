"""Text turns through the socket, the Redis channel layer and a real Celery worker (scripted engine)."""

import asyncio
from pathlib import Path

import psutil
import pytest
from asgiref.sync import sync_to_async
from django.conf import settings
from django.test import override_settings

from apps.conversations.models import ChatSession, Message
from tests.realtime.client import connected_socket, dumps, send_raw, types, until_turn_end

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio, pytest.mark.usefixtures("llm_worker")]


async def say(comm, content):
    await comm.send_json_to({"type": "message", "content": content})
    return await until_turn_end(comm)


async def messages_of(session_id):
    return await sync_to_async(list)(Message.objects.filter(session_id=session_id).order_by("created_at"))


async def wait_for_message(turn_id, timeout=10.0):
    for _ in range(int(timeout / 0.05)):
        message = await Message.objects.filter(pk=turn_id).afirst()
        if message:
            return message
        await asyncio.sleep(0.05)
    raise AssertionError(f"message {turn_id} never saved")


async def test_text_turn_frames_in_order_and_persisted(api_key, character):
    comm = await connected_socket(api_key)
    frames = await say(comm, "I love the stars")
    kinds = types(frames)
    assert kinds[:2] == ["thinking", "llm_start"]
    assert kinds[-2:] == ["llm_end", "turn_end"]
    assert set(kinds[2:-2]) == {"response"}, kinds  # no text_delta without opting in
    sentences = [f for f in frames if f["type"] == "response"]
    reply = " ".join(f["content"] for f in sentences)
    assert reply == "You said: I love the stars. I am Nova. Anything else?"
    assert all(f["content_cn"] == f["content"] and f["emotion"] == "happy" for f in sentences)
    assert frames[-2]["elapsed_time"] >= 0
    end = frames[-1]
    assert end["status"] == "complete"

    session = await ChatSession.objects.aget(pk=(await Message.objects.aget(pk=end["message_id"])).session_id)
    rows = await messages_of(session.pk)
    assert [(m.role, m.content) for m in rows] == [
        ("assistant", "Hi! I'm Nova."),
        ("user", "I love the stars"),
        ("assistant", reply),
    ]
    assistant = rows[-1]
    assert (assistant.emotion, assistant.status) == ("happy", "complete")
    assert {"queue_ms", "first_token_ms", "llm_ms"} <= set(assistant.timings)
    await comm.disconnect()


async def test_text_deltas_are_opt_in_and_add_up_to_the_reply(api_key, character):
    comm = await connected_socket(api_key, text_deltas=True)
    frames = await say(comm, "hello there")
    deltas = [f["content"] for f in frames if f["type"] == "text_delta"]
    assert len(deltas) >= 1
    assert "".join(deltas).strip() == "You said: hello there. I am Nova. Anything else?"
    assert "[" not in "".join(deltas)  # the emotion tag is never shown
    assert types(frames).index("text_delta") < types(frames).index("response")
    await comm.disconnect()


async def test_multi_turn_conversation_continues_after_reconnect(api_key, character):
    comm = await connected_socket(api_key)
    await say(comm, "first")
    await comm.disconnect()
    comm = await connected_socket(api_key)
    frames = await say(comm, "second")
    session_id = (await Message.objects.aget(pk=frames[-1]["message_id"])).session_id
    rows = await messages_of(session_id)
    assert [m.content for m in rows if m.role == "user"] == ["first", "second"]
    assert len(rows) == 5  # greeting + two exchanges
    await comm.disconnect()


async def test_second_message_during_a_turn_is_refused_and_turn_still_ends(api_key, character):
    comm = await connected_socket(api_key)
    await comm.send_json_to({"type": "message", "content": "tell me something slow"})
    assert (await comm.receive_json_from(timeout=5))["type"] == "thinking"
    await comm.send_json_to({"type": "message", "content": "hurry"})
    frames = await until_turn_end(comm)
    errors = [f for f in frames if f["type"] == "error"]
    assert [e["code"] for e in errors] == ["turn_in_progress"]
    assert frames[-1]["status"] == "complete"
    await comm.disconnect()


async def test_clear_history_interrupts_the_turn_and_saves_what_was_written(api_key, character):
    comm = await connected_socket(api_key)
    await comm.send_json_to({"type": "message", "content": "a story told slowly please"})
    first = await comm.receive_json_from(timeout=5)
    assert first["type"] == "thinking"
    assert (await comm.receive_json_from(timeout=10))["type"] == "llm_start"
    await comm.send_json_to({"type": "clear_history"})
    frames = [await comm.receive_json_from(timeout=5)]
    while frames[-1]["type"] != "history_cleared":
        frames.append(await comm.receive_json_from(timeout=5))
    end = next(f for f in frames if f["type"] == "turn_end")
    assert end["status"] == "interrupted"
    old = await wait_for_message(end["message_id"])
    assert old.status == "interrupted"
    assert "Anything else?" not in old.content  # stopped mid-reply
    assert await comm.receive_nothing(timeout=0.5)  # nothing from the stale turn leaks through
    new_session = frames[-1]["session_id"]
    assert new_session != str(old.session_id)
    frames = await say(comm, "fresh start")
    assert frames[-1]["status"] == "complete"
    assert [m.content for m in await messages_of(new_session) if m.role == "user"] == ["fresh start"]
    await comm.disconnect()


async def test_engine_failure_is_reported_and_turn_ends(api_key, character):
    comm = await connected_socket(api_key)
    frames = await say(comm, "please explode")
    error = next(f for f in frames if f["type"] == "error")
    assert error["code"] == "llm_failed"
    assert frames[-1]["status"] == "failed"
    saved = await Message.objects.aget(pk=frames[-1]["message_id"])
    assert saved.status == "failed"
    assert await send_raw(comm, dumps({"type": "ping"})) == {"type": "pong"}
    frames = await say(comm, "are you ok")
    assert frames[-1]["status"] == "complete"
    await comm.disconnect()


async def test_switch_character_moves_the_conversation(api_key, character):
    from apps.characters.models import Character

    await Character.objects.acreate(
        name="Sage", slug="sage", persona="You are Sage.", greeting="Greetings.", is_published=True
    )
    comm = await connected_socket(api_key)
    frame = await send_raw(comm, dumps({"type": "switch_character", "character_name": "sage"}))
    assert frame["type"] == "character_switched"
    assert (frame["character"], frame["character_display_name"], frame["message"]) == ("sage", "Sage", "Greetings.")
    frames = await say(comm, "who are you")
    assert "I am Sage." in " ".join(f["content"] for f in frames if f["type"] == "response")
    session = await ChatSession.objects.select_related("character").aget(pk=frame["session_id"])
    assert session.character.slug == "sage"
    await comm.disconnect()


async def test_disconnect_mid_turn_saves_an_interrupted_reply(api_key, character):
    comm = await connected_socket(api_key)
    await comm.send_json_to({"type": "message", "content": "slow slow slow"})
    assert (await comm.receive_json_from(timeout=5))["type"] == "thinking"
    assert (await comm.receive_json_from(timeout=10))["type"] == "llm_start"
    await comm.disconnect()
    for _ in range(100):
        rows = await sync_to_async(list)(Message.objects.filter(role="assistant", status="interrupted"))
        if rows:
            break
        await asyncio.sleep(0.05)
    assert len(rows) == 1


async def test_a_lost_job_ends_the_turn_with_turn_timeout(api_key, character, monkeypatch):
    monkeypatch.setattr("apps.conversations.turns.enqueue", lambda *a, **k: None)  # the broker lost it
    comm = await connected_socket(api_key)
    with override_settings(TURN_IDLE_TIMEOUT_S=0.3):
        frames = await say(comm, "anyone there?")
    assert types(frames) == ["thinking", "error", "turn_end"]
    assert frames[1]["code"] == "turn_timeout"
    assert frames[2]["status"] == "failed"
    assert (await Message.objects.aget(pk=frames[2]["message_id"])).status == "failed"
    await comm.disconnect()


def database_ports(worker) -> set[int]:
    """The local ports of a worker's pool processes' connections to PostgreSQL."""
    pid = worker.popen.pid
    children = [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    port = int(settings.DATABASES["default"]["PORT"] or 5432)
    return {
        c.laddr.port
        for child in children
        for c in psutil.Process(child).net_connections(kind="tcp")
        if c.raddr and c.raddr.port == port
    }


async def test_the_worker_keeps_its_database_connection_from_job_to_job(api_key, character, llm_worker):
    """Celery's Django fixup would close it around every job: a new PostgreSQL connection, ~5 ms of
    each reply's first text."""
    comm = await connected_socket(api_key)
    await say(comm, "Hello there")
    first = database_ports(llm_worker)
    await say(comm, "Tell me more")
    assert first and database_ports(llm_worker) == first
