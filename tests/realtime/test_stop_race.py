"""Stop, then at once regenerate or say something else: the stopped reply is already saved, as far as
the client saw it, in both modes (a real LLM worker; tasks in threads of this process)."""

import asyncio

import pytest
from asgiref.sync import sync_to_async
from django.test import override_settings

from apps.conversations.models import Message
from tests.realtime.client import connected_socket, types, until_turn_end

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio, pytest.mark.usefixtures("llm_worker")]

ROUNDS = 12


async def rows_of(session_id):
    return await sync_to_async(list)(Message.objects.filter(session_id=session_id).order_by("created_at"))


async def stop_when(comm, kind: str | None) -> tuple[list[dict], str]:
    """Wait for the first frame of `kind` (None: at once), send `stop`, read up to `turn_end`:
    (the turn's frames, the text shown)."""
    frames = []
    while kind is not None and (not frames or frames[-1]["type"] != kind):
        frames.append(await comm.receive_json_from(timeout=30))
        assert frames[-1]["type"] not in ("turn_end", "error"), frames
    await comm.send_json_to({"type": "stop"})
    frames += await until_turn_end(comm)
    assert types(frames)[-2:] == ["interrupted", "turn_end"], types(frames)
    assert frames[-1]["status"] == "interrupted"
    return frames, "".join(f["content"] for f in frames if f["type"] == "text_delta").strip()


async def stop_and_regenerate_rounds(api_key) -> None:
    comm = await connected_socket(api_key, text_deltas=True)
    await comm.send_json_to({"type": "message", "content": "a story told slowly please"})
    shown_by_turn = {}
    for round_ in range(ROUNDS):
        # Mostly mid-reply; every third round right after `thinking` (the job queued, or just taken).
        frames, shown = await stop_when(comm, None if round_ % 3 == 2 else "text_delta")
        shown_by_turn[frames[-1]["message_id"]] = shown
        await comm.send_json_to({"type": "regenerate"})  # at once: no sleep, no retry
        answer = await comm.receive_json_from(timeout=10)
        assert answer["type"] == "thinking", f"round {round_}: {answer}"
    again = await until_turn_end(comm)  # the last one is left to finish
    assert again[-1]["status"] == "complete"
    assert "".join(f["content"] for f in again if f["type"] == "text_delta").strip().endswith("Anything else?")

    final = await Message.objects.aget(pk=again[-1]["message_id"])
    rows = await rows_of(final.session_id)
    assert [(m.role, m.status) for m in rows] == [
        ("assistant", "complete"),  # the greeting
        ("user", "complete"),
        *[("assistant", "replaced")] * ROUNDS,
        ("assistant", "complete"),
    ]
    assert {str(m.pk): m.content for m in rows[2:-1]} == shown_by_turn  # each saved as far as it was shown
    assert final.content.endswith("Anything else?")
    # The jobs that were stopped mid-reply let go a moment later: they keep the saved text and add
    # the emotion and how long they took to stop (in the embedded mode, the test waits for them).
    cut = [turn_id for turn_id, shown in shown_by_turn.items() if shown]
    assert cut
    for _ in range(200):
        noted = await sync_to_async(list)(Message.objects.filter(pk__in=cut, timings__has_key="llm_stop_ms"))
        if len(noted) == len(cut):
            break
        await asyncio.sleep(0.05)
    assert {(str(m.pk), m.status, m.content, m.emotion) for m in noted} == {
        (turn_id, "replaced", shown_by_turn[turn_id], "happy") for turn_id in cut
    }
    await comm.disconnect()


async def test_regenerate_at_once_after_stop_finds_the_stopped_reply_every_time(api_key, character):
    await stop_and_regenerate_rounds(api_key)


async def test_regenerate_at_once_after_stop_in_the_embedded_mode(api_key, character):
    with override_settings(TASKS_IN_PROCESS=True, MEMORY_EXTRACTION=False):
        await stop_and_regenerate_rounds(api_key)


async def test_a_message_at_once_after_stop_comes_after_the_stopped_reply(api_key, character):
    comm = await connected_socket(api_key, text_deltas=True)
    await comm.send_json_to({"type": "message", "content": "a story told slowly please"})
    frames, shown = await stop_when(comm, "text_delta")
    assert shown and not shown.endswith("Anything else?")
    await comm.send_json_to({"type": "message", "content": "never mind"})
    answer = await until_turn_end(comm)
    assert answer[-1]["status"] == "complete"
    rows = await rows_of((await Message.objects.aget(pk=answer[-1]["message_id"])).session_id)
    assert [(m.role, m.status, m.content) for m in rows] == [
        ("assistant", "complete", "Hi! I'm Nova."),
        ("user", "complete", "a story told slowly please"),
        ("assistant", "interrupted", shown),  # before the next message, not after it
        ("user", "complete", "never mind"),
        ("assistant", "complete", "You said: never mind. I am Nova. Anything else?"),
    ]
    # The stopped job lets go a moment later: it keeps the saved reply and adds what only it knew.
    for _ in range(200):
        stopped = await Message.objects.aget(pk=frames[-1]["message_id"])
        if "llm_stop_ms" in stopped.timings:
            break
        await asyncio.sleep(0.05)
    assert (stopped.status, stopped.content, stopped.emotion) == ("interrupted", shown, "happy")
    assert stopped.timings["llm_stop_ms"] >= 0
    await comm.disconnect()
