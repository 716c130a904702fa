"""Memory in conversation: remembered after a turn, retrieved into the next prompt, listed, searched
and forgotten over the socket and REST. Real workers: llm (scripted engine), embed and batch (MiniLM).

The scripted engine answers "What do you remember?" with the memories its prompt holds.
"""

import asyncio

import pytest
from asgiref.sync import sync_to_async

from apps.conversations.models import Message
from apps.memory.models import Memory
from tests.realtime.client import close_all, connected_socket, dumps, send_raw

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.asyncio,
    pytest.mark.usefixtures("llm_worker", "memory_worker"),
]


@pytest.fixture(autouse=True)
async def _close_sockets():
    yield
    await close_all()


async def turn(comm, text: str) -> list[dict]:
    await comm.send_json_to({"type": "message", "content": text})
    frames = []
    while not frames or frames[-1]["type"] != "turn_end":
        frames.append(await comm.receive_json_from(timeout=20))
    return frames


def reply_of(frames) -> str:
    return " ".join(f["content"] for f in frames if f["type"] == "response")


async def memories_settle(user, count: int, timeout: float = 20) -> list[Memory]:
    """The extraction job runs after the turn: wait for it."""
    for _ in range(int(timeout * 10)):
        rows = await sync_to_async(list)(Memory.objects.filter(user=user).order_by("created_at"))
        if len(rows) >= count:
            return rows
        await asyncio.sleep(0.1)
    raise AssertionError(f"{len(rows)} memories, expected {count}")


async def test_what_the_user_says_is_remembered_and_comes_back_in_a_later_session(api_key, user, character):
    comm = await connected_socket(api_key)
    await turn(comm, "My name is Ana. I live in Lisbon with my dog Rex. What is a quasar?")
    ana, lisbon = await memories_settle(user, 2)
    assert ana.text == "The user said: My name is Ana." and ana.kind == "fact"
    assert lisbon.source_message_ids  # the user's message it came from
    await send_raw(comm, dumps({"type": "clear_history"}))  # a new session: no history to copy from
    frames = await turn(comm, "What do you remember about my pet?")
    assert "I live in Lisbon with my dog Rex." in reply_of(frames)
    reply = await Message.objects.aget(pk=frames[-1]["message_id"])
    assert str(lisbon.pk) in reply.memories_used and reply.timings["memory_ms"] >= 0


async def test_another_users_memories_never_reach_the_prompt(api_key, user, other_user, character):
    from apps.accounts.services import token_create

    bob_key = await sync_to_async(lambda: token_create(user=other_user, name="bob").key)()
    bob = await connected_socket(bob_key)
    await turn(bob, "My name is Bob and I collect old maps.")
    await memories_settle(other_user, 1)
    ana = await connected_socket(api_key)
    frames = await turn(ana, "What do you remember about my hobby?")
    assert "Bob" not in reply_of(frames) and "I remember: nothing." in reply_of(frames)


async def test_list_search_and_forget_over_the_socket(api_key, user, character):
    comm = await connected_socket(api_key)
    await turn(comm, "I really love jazz music. I work as a nurse.")
    jazz, nurse = await memories_settle(user, 2)
    listed = await send_raw(comm, dumps({"type": "memories_list"}))
    assert listed["type"] == "memories" and {i["id"] for i in listed["items"]} == {str(jazz.pk), str(nurse.pk)}
    found = await send_raw(comm, dumps({"type": "memories_list", "query": "hospital job", "limit": 1}))
    assert [i["id"] for i in found["items"]] == [str(nurse.pk)] and found["items"][0]["similarity"] > 0
    gone = await send_raw(comm, dumps({"type": "memory_delete", "memory_id": str(nurse.pk)}))
    assert gone == {"type": "memory_deleted", "memory_id": str(nurse.pk)}
    found = await send_raw(comm, dumps({"type": "memories_list", "query": "hospital job"}))
    assert [i["id"] for i in found["items"]] == [str(jazz.pk)]
    again = await send_raw(comm, dumps({"type": "memory_delete", "memory_id": str(nurse.pk)}))
    assert (again["type"], again["code"]) == ("error", "memory_not_found")
    bad = await send_raw(comm, dumps({"type": "memory_delete", "memory_id": "nope"}))
    assert bad["code"] == "invalid_memory_id"
    bad = await send_raw(comm, dumps({"type": "memories_list", "limit": 0}))
    assert bad["code"] == "invalid_field"


async def test_turns_keep_their_memories_while_every_memory_is_reembedded(api_key, user, character, settings):
    """Re-embed while people chat: every turn before, during and after the switch gets its memories."""
    settings.QUOTA_TURNS = 0  # one user talks as fast as the worker answers, for as long as the job runs
    from apps.memory import services
    from apps.memory.models import EmbeddingIndex, Job
    from tests.memory.test_reembed import seed
    from workers.embed.engine import DEFAULT_MODEL

    await sync_to_async(seed)(user, character, 1500)
    old = await sync_to_async(lambda: EmbeddingIndex.objects.get(state="active"))()
    job = await sync_to_async(services.reembed_start)(model=DEFAULT_MODEL, chunk_size=100)
    comm = await connected_socket(api_key)
    versions, status = set(), "running"
    for _ in range(300):
        if status != "running" and old.version + 1 in versions:
            break
        frames = await turn(comm, "What do you remember about chess?")
        reply = await Message.objects.aget(pk=frames[-1]["message_id"])
        assert len(reply.memories_used) >= 1 and "I love chess" in reply_of(frames), reply_of(frames)
        active = await sync_to_async(lambda: EmbeddingIndex.objects.get(state="active").version)()
        versions.add(active)
        status = (await Job.objects.aget(pk=job.pk)).status
        assert len(versions) <= 2
    assert status == "complete" and versions == {old.version, old.version + 1}
