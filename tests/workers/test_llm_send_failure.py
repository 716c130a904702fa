"""A reply whose socket cannot be reached mid-way is still saved, and the worker goes on (real LLM worker, Redis)."""

import asyncio
import time
import uuid

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from apps.conversations.models import Message
from apps.conversations.services import session_open
from apps.conversations.turns import text_turn_submit
from apps.realtime import protocol as p

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("llm_worker")]


def wait_for_reply(turn_id: str, timeout: float = 20.0) -> Message:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        message = Message.objects.filter(pk=turn_id).first()
        if message is not None:
            return message
        time.sleep(0.05)
    raise AssertionError(f"the reply to turn {turn_id} was never saved")


def test_a_reply_is_saved_when_the_channel_layer_rejects_a_send_mid_reply(user, character):
    """The socket's channel is nearly full (channels_redis raises ChannelFull at its capacity) and stays
    so: the worker's first two sends get through, the third waits CHANNEL_FULL_WAIT_S and is rejected.
    The engine stops, the reply written so far is saved as failed with the send error in its timings,
    and the next turn is answered."""
    layer = get_channel_layer()
    channel = f"full-{uuid.uuid4().hex}"
    room = 2  # llm_start, then the first sentence's `response`; the second sentence hits the capacity

    async def fill():
        for i in range(layer.get_capacity(channel) - room):
            await layer.send(channel, {"type": "filler", "n": i})

    async def drain() -> list[dict]:
        got = []
        for _ in range(layer.get_capacity(channel)):
            got.append(await layer.receive(channel))
        return got

    async_to_sync(fill)()
    session = session_open(user=user, character=character)
    turn_id = text_turn_submit(session=session, content="hello there", reply_channel=channel, text_deltas=False)

    reply = wait_for_reply(turn_id)
    assert reply.status == Message.Status.FAILED
    assert reply.content == "You said: hello there. I am Nova."  # stopped: "Anything else?" was never written
    assert "ChannelFull" in reply.timings["send_error"]
    assert {"llm_ms", "first_token_ms"} <= set(reply.timings)

    delivered = [m for m in async_to_sync(drain)() if m["type"] != "filler"]  # what the socket would have had
    frames = [f for m in delivered for f in p.TurnFrames.model_validate(m).frames]
    assert [type(f) for f in frames] == [p.LlmStart, p.Response]
    assert frames[1].content == "You said: hello there."

    again = text_turn_submit(
        session=session, content="still there?", reply_channel=f"ok-{uuid.uuid4().hex}", text_deltas=False
    )
    answer = wait_for_reply(again)
    assert (answer.status, answer.content) == (
        Message.Status.COMPLETE,
        "You said: still there?. I am Nova. Anything else?",
    )


def test_a_reply_waits_for_a_full_channel_to_drain_and_arrives_whole(user, character):
    """A web process behind on its sockets fills its channel for a moment: the reply's send waits for
    room instead of ending the turn, and the socket gets every frame, `turn_end` included, in order."""
    layer = get_channel_layer()
    channel = f"busy-{uuid.uuid4().hex}"

    async def fill():
        for i in range(layer.get_capacity(channel) - 2):  # room for llm_start and the first sentence
            await layer.send(channel, {"type": "filler", "n": i})

    async def drain_once_full() -> list[dict]:
        # The reply's first two frames fill the channel; its third send is then waiting for room.
        redis, key = layer.connection(0), layer.prefix + channel
        deadline = time.monotonic() + 15
        while await redis.zcard(key) < layer.get_capacity(channel):
            assert time.monotonic() < deadline, "the reply never filled the channel"
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.5)  # the web process catching up, a while later
        got = []
        while not got or got[-1]["type"] == "filler" or not _ends_turn(got[-1]):
            got.append(await asyncio.wait_for(layer.receive(channel), 10))
        return got

    async_to_sync(fill)()
    session = session_open(user=user, character=character)
    turn_id = text_turn_submit(session=session, content="hello there", reply_channel=channel, text_deltas=False)
    delivered = [m for m in async_to_sync(drain_once_full)() if m["type"] != "filler"]

    reply = wait_for_reply(turn_id)
    assert (reply.status, reply.content) == (
        Message.Status.COMPLETE,
        "You said: hello there. I am Nova. Anything else?",
    )
    assert "send_error" not in reply.timings
    frames = [f for m in delivered for f in p.TurnFrames.model_validate(m).frames]
    assert [type(f) for f in frames] == [p.LlmStart, *[p.Response] * (len(frames) - 3), p.LlmEnd, p.TurnEnd]
    assert " ".join(f.content for f in frames[1:-2]) == reply.content
    assert frames[-1].status == "complete"


def _ends_turn(message: dict) -> bool:
    return any(frame.get("type") == "turn_end" for frame in message.get("frames", []))
