"""A memory the user deleted stays forgotten: no later session summary brings it back.

Real workers: llm (scripted engine), embed and batch (MiniLM, and the summariser as the beat runs
it). The scripted engine's summary repeats the conversation it was given, so whatever the summary's
input holds shows in its text.
"""

import asyncio
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async

from apps.conversations.models import ChatSession, Message
from apps.memory.models import Memory
from tests.memory.test_turns import memories_settle, turn
from tests.realtime.client import close_all, connected_socket, dumps, send_raw
from workers.dispatch import enqueue
from workers.embed.tasks import sessions_summarize_idle

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.asyncio,
    pytest.mark.usefixtures("llm_worker", "memory_worker"),
]


@pytest.fixture(autouse=True)
async def _close_sockets():
    yield
    await close_all()


async def summary_after_idle(session_id, timeout: float = 30) -> Memory:
    """Let the session go idle and run the idle-session job on the batch worker, as the beat would."""
    await ChatSession.objects.filter(pk=session_id).aupdate(
        updated_at=(await ChatSession.objects.aget(pk=session_id)).updated_at - timedelta(hours=2)
    )
    await sync_to_async(enqueue)(sessions_summarize_idle.name)
    for _ in range(int(timeout * 10)):
        session = await ChatSession.objects.aget(pk=session_id)
        summary = await Memory.objects.filter(kind="summary", session_id=session_id).afirst()
        if session.summarized_at is not None and summary is not None:
            return summary
        await asyncio.sleep(0.1)
    raise AssertionError("no summary written")


async def forget(comm, memory: Memory) -> None:
    gone = await send_raw(comm, dumps({"type": "memory_delete", "memory_id": str(memory.pk)}))
    assert gone == {"type": "memory_deleted", "memory_id": str(memory.pk)}


async def memory_texts(comm) -> list[str]:
    listed = await send_raw(comm, dumps({"type": "memories_list"}))
    return [item["text"] for item in listed["items"]]


async def test_a_deleted_memory_is_not_in_the_later_summary(api_key, user, character):
    comm = await connected_socket(api_key)
    await turn(comm, "I live in Lisbon.")
    (lisbon,) = await memories_settle(user, 1)
    assert "Lisbon" in lisbon.text
    await turn(comm, "I really love jazz music.")
    await memories_settle(user, 2)
    await forget(comm, lisbon)
    session_id = (await Message.objects.aget(content="I live in Lisbon.")).session_id
    summary = await summary_after_idle(session_id)
    assert "jazz" in summary.text  # the rest of the session is summed up
    assert "Lisbon" not in summary.text, summary.text
    assert not any("Lisbon" in text for text in await memory_texts(comm))
    frames = await turn(comm, "What do you remember about my home?")
    assert "Lisbon" not in " ".join(f["content"] for f in frames if f["type"] == "response")


async def test_deleting_a_memory_drops_the_summary_that_holds_it_and_the_next_one_leaves_it_out(
    api_key, user, character
):
    comm = await connected_socket(api_key)
    await turn(comm, "I live in Lisbon.")
    await turn(comm, "I really love jazz music.")
    lisbon, _ = await memories_settle(user, 2)
    session_id = (await Message.objects.aget(content="I live in Lisbon.")).session_id
    before = await summary_after_idle(session_id)
    assert "Lisbon" in before.text  # written before the user deleted anything
    await forget(comm, lisbon)
    texts = await memory_texts(comm)  # at once, not at the next summary
    assert not any("Lisbon" in text for text in texts), texts
    after = await summary_after_idle(session_id)
    assert after.pk != before.pk and "jazz" in after.text and "Lisbon" not in after.text, after.text
    assert str(lisbon.source_message_ids[0]) not in after.source_message_ids


async def test_deleting_a_summary_forgets_that_conversation_but_not_what_came_after(api_key, user, character):
    comm = await connected_socket(api_key)
    await turn(comm, "I live in Lisbon.")
    await memories_settle(user, 1)
    session_id = (await Message.objects.aget(content="I live in Lisbon.")).session_id
    summary = await summary_after_idle(session_id)
    await forget(comm, summary)
    await turn(comm, "I really love jazz music.")  # the same session goes on
    await memories_settle(user, 2)
    later = await summary_after_idle(session_id)
    assert "jazz" in later.text and "Lisbon" not in later.text, later.text
