"""Opening a given session, regenerating the last reply and stopping a turn, over the socket with a
real LLM worker (scripted engine)."""

import asyncio

import pytest
from asgiref.sync import sync_to_async

from apps.conversations.models import ChatSession, Message
from tests.realtime.client import connect, connected_socket, open_socket, types, until_turn_end

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio, pytest.mark.usefixtures("llm_worker")]


async def say(comm, content):
    await comm.send_json_to({"type": "message", "content": content})
    return await until_turn_end(comm)


async def rows_of(session_id):
    return await sync_to_async(list)(Message.objects.filter(session_id=session_id).order_by("created_at"))


async def settled(turn_id, status, timeout=10.0):
    for _ in range(int(timeout / 0.05)):
        message = await Message.objects.filter(pk=turn_id, status=status).afirst()
        if message:
            return message
        await asyncio.sleep(0.05)
    raise AssertionError(f"message {turn_id} never saved as {status}")


async def test_connect_opens_the_session_asked_for(api_key, user, character):
    comm = await connected_socket(api_key)
    await say(comm, "remember the first session")
    await comm.send_json_to({"type": "clear_history"})
    newer = (await comm.receive_json_from(timeout=5))["session_id"]
    await say(comm, "this is the second one")
    await comm.disconnect()
    older = await ChatSession.objects.exclude(pk=newer).values_list("pk", flat=True).aget()

    comm = await open_socket()
    plain = await connect(comm, api_key=api_key)
    assert plain["session_id"] == newer  # without session_id: the latest
    await comm.disconnect()

    comm = await open_socket()
    opened = await connect(comm, api_key=api_key, session_id=str(older))
    assert (opened["type"], opened["session_id"]) == ("connected", str(older))
    frames = await say(comm, "back to the first")
    assert frames[-1]["status"] == "complete"
    said = [m.content for m in await rows_of(older) if m.role == "user"]
    assert said == ["remember the first session", "back to the first"]


async def test_someone_elses_or_another_characters_session_is_unknown(api_key, user, character, django_user_model):
    from apps.characters.models import Character
    from apps.conversations.services import session_create

    bob = await django_user_model.objects.acreate(username="bob")
    theirs = await sync_to_async(session_create)(user=bob, character=character)
    sage = await Character.objects.acreate(name="Sage", slug="sage", persona="You are Sage.", is_published=True)
    mine_with_sage = await sync_to_async(session_create)(user=user, character=sage)
    deleted = await sync_to_async(session_create)(user=user, character=character)
    from apps.conversations.services import session_delete

    await sync_to_async(session_delete)(user=user, session_id=deleted.pk)

    for session_id in (str(theirs.pk), str(mine_with_sage.pk), str(deleted.pk), "not-a-uuid"):
        comm = await open_socket()
        reply = await connect(comm, api_key=api_key, session_id=session_id)
        assert (reply["type"], reply["code"]) == ("error", "unknown_session"), session_id
        await comm.send_json_to({"type": "message", "content": "hello?"})  # still not connected
        assert (await comm.receive_json_from(timeout=5))["code"] == "not_connected"
        await comm.disconnect()
    assert await Message.objects.filter(session=theirs, role="user").acount() == 0


async def test_regenerate_replaces_the_last_reply(api_key, character):
    comm = await connected_socket(api_key)
    await comm.send_json_to({"type": "regenerate"})  # only the greeting: nothing to replace
    assert (await comm.receive_json_from(timeout=5))["code"] == "nothing_to_regenerate"

    first = await say(comm, "Name a planet")
    first_id = first[-1]["message_id"]
    await comm.send_json_to({"type": "regenerate"})
    again = await until_turn_end(comm)
    assert types(again)[:2] == ["thinking", "llm_start"] and types(again)[-2:] == ["llm_end", "turn_end"]
    assert again[-1]["status"] == "complete" and again[-1]["message_id"] != first_id
    reply = " ".join(f["content"] for f in again if f["type"] == "response")
    assert reply == "You said: Name a planet. I am Nova. Anything else?"  # answers the same message

    session_id = (await Message.objects.aget(pk=first_id)).session_id
    rows = await rows_of(session_id)
    assert [(m.role, m.status) for m in rows] == [
        ("assistant", "complete"),  # the greeting
        ("user", "complete"),  # said once: regenerate adds no message of the user's
        ("assistant", "replaced"),
        ("assistant", "complete"),
    ]
    assert str(rows[-1].pk) == again[-1]["message_id"]
    frames = await say(comm, "and another")  # the conversation goes on after it
    assert frames[-1]["status"] == "complete"


async def test_stop_interrupts_the_turn_keeps_the_session_then_regenerate(api_key, character):
    comm = await connected_socket(api_key)
    await comm.send_json_to({"type": "stop"})
    assert (await comm.receive_json_from(timeout=5))["code"] == "no_turn"

    await comm.send_json_to({"type": "message", "content": "a story told slowly please"})
    assert (await comm.receive_json_from(timeout=5))["type"] == "thinking"
    assert (await comm.receive_json_from(timeout=10))["type"] == "llm_start"
    await comm.send_json_to({"type": "regenerate"})  # refused while the turn runs
    frames = [await comm.receive_json_from(timeout=5)]
    await comm.send_json_to({"type": "stop"})
    frames += await until_turn_end(comm)
    errors = [f["code"] for f in frames if f["type"] == "error"]
    assert errors == ["turn_in_progress"]
    assert types(frames)[-2:] == ["interrupted", "turn_end"]
    assert frames[-1]["status"] == "interrupted"
    assert await comm.receive_nothing(timeout=0.5)  # nothing of the stopped turn leaks through
    cut = await settled(frames[-1]["message_id"], "interrupted")
    assert "Anything else?" not in cut.content  # saved as far as it was written

    await comm.send_json_to({"type": "regenerate"})  # the cut-off reply can be written again, whole
    again = await until_turn_end(comm)
    assert again[-1]["status"] == "complete"
    assert " ".join(f["content"] for f in again if f["type"] == "response").endswith("Anything else?")
    rows = await rows_of(cut.session_id)  # the same session all along
    assert [m.status for m in rows if m.role == "assistant"] == ["complete", "replaced", "complete"]
