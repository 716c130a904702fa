"""The scaled mode's channel layer (apps/realtime/layers.py): channels_redis' own behaviour, each send
one round trip to Redis."""

import asyncio
import time

import pytest
from channels.exceptions import ChannelFull
from django.conf import settings

from apps.realtime.layers import OneTripRedisChannelLayer


def layer(**config) -> OneTripRedisChannelLayer:
    return OneTripRedisChannelLayer(**{**settings.CHANNEL_LAYERS["default"]["CONFIG"], **config})


def run(coro):
    return asyncio.run(coro)


def test_the_settings_use_it():
    assert settings.CHANNEL_LAYERS["default"]["BACKEND"] == "apps.realtime.layers.OneTripRedisChannelLayer"


@pytest.mark.parametrize("local", [True, False], ids=["process-local", "general"])
def test_messages_arrive_once_in_the_order_they_were_sent(local):
    async def go():
        sender, receiver = layer(), layer()
        channel = await receiver.new_channel() if local else f"test.general.{time.monotonic_ns()}"
        for i in range(50):
            await sender.send(channel, {"type": "frame", "i": i})
        received = [(await receiver.receive(channel))["i"] for _ in range(50)]
        with pytest.raises(asyncio.TimeoutError):  # nothing more: each arrived once
            await asyncio.wait_for(receiver.receive(channel), 0.3)
        await receiver.flush()
        return received

    assert run(go()) == list(range(50))


def test_a_full_channel_refuses_the_message_and_keeps_those_it_holds():
    async def go():
        sender, receiver = layer(capacity=3), layer(capacity=3)
        channel = await receiver.new_channel()
        for i in range(3):
            await sender.send(channel, {"type": "frame", "i": i})
        with pytest.raises(ChannelFull):
            await sender.send(channel, {"type": "frame", "i": 3})
        received = [(await receiver.receive(channel))["i"] for _ in range(3)]
        await sender.send(channel, {"type": "frame", "i": 4})  # room again
        received.append((await receiver.receive(channel))["i"])
        await receiver.flush()
        return received

    assert run(go()) == [0, 1, 2, 4]


def test_messages_past_the_expiry_are_dropped_and_make_room():
    async def go():
        sender, receiver = layer(capacity=2, expiry=1), layer(capacity=2, expiry=1)
        channel = await receiver.new_channel()
        await sender.send(channel, {"type": "frame", "i": 0})
        await sender.send(channel, {"type": "frame", "i": 1})
        await asyncio.sleep(2.1)  # both expired: the next send removes them before counting
        await sender.send(channel, {"type": "frame", "i": 2})
        first = (await receiver.receive(channel))["i"]
        await receiver.flush()
        return first

    assert run(go()) == 2


def test_groups_still_reach_their_members():
    async def go():
        receiver = layer()
        channel = await receiver.new_channel()
        group = f"test-group-{time.monotonic_ns()}"
        await receiver.group_add(group, channel)
        await layer().group_send(group, {"type": "frame", "i": 7})
        got = (await receiver.receive(channel))["i"]
        await receiver.flush()
        return got

    assert run(go()) == 7
