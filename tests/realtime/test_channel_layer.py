"""The scaled mode's channel layer (apps/realtime/layers.py): channels_redis' own behaviour, each send
one round trip to Redis. Each test uses channels of its own (left to expire: the layer's `flush` would
empty every channel of the test stack's processes too)."""

import asyncio
import time

import pytest
from channels.exceptions import ChannelFull
from django.conf import settings

from apps.realtime.layers import OneTripRedisChannelLayer


def layer(**config) -> OneTripRedisChannelLayer:
    """The settings' layer; a `capacity` given applies to every channel, process channels included."""
    if "capacity" in config:
        config.setdefault("channel_capacity", {})
    return OneTripRedisChannelLayer(**{**settings.CHANNEL_LAYERS["default"]["CONFIG"], **config})


def run(coro):
    return asyncio.run(coro)


def test_the_settings_use_it():
    assert settings.CHANNEL_LAYERS["default"]["BACKEND"] == "apps.realtime.layers.OneTripRedisChannelLayer"


def test_a_web_process_s_channel_holds_its_sockets_backlog():
    """All of a web process's sockets share one Redis list: its capacity is the process's, not a socket's
    (at 1,000, 500 sockets with 20 calls filled it and replies stopped)."""
    config = settings.CHANNEL_LAYERS["default"]["CONFIG"]
    default = layer()
    process_channel = run(default.new_channel())
    assert default.get_capacity(process_channel) == config["channel_capacity"]["*!*"] > config["capacity"]
    assert default.get_capacity("test.general.channel") == config["capacity"]


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
        return received

    assert run(go()) == list(range(50))


def test_sends_from_threads_without_a_loop_arrive_once_in_order_and_a_full_channel_refuses_them():
    """A worker streaming many turns sends each frame from the turn's own thread (`send_blocking`)."""
    from concurrent.futures import ThreadPoolExecutor

    sender, receiver = layer(capacity=40), layer(capacity=40)
    channel = run(receiver.new_channel())

    def turn(n: int) -> None:
        for i in range(10):
            sender.send_blocking(channel, {"type": "frame", "turn": n, "i": i})

    with ThreadPoolExecutor(4) as threads:
        list(threads.map(turn, range(4)))
    with pytest.raises(ChannelFull):
        sender.send_blocking(channel, {"type": "frame", "turn": 9, "i": 0})

    async def drain():
        return [await receiver.receive(channel) for _ in range(40)]

    received = run(drain())
    for n in range(4):  # each thread's frames once, in its order
        assert [m["i"] for m in received if m["turn"] == n] == list(range(10))


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
        return received

    assert run(go()) == [0, 1, 2, 4]


def test_messages_past_the_expiry_are_dropped_and_make_room():
    async def go():
        sender, receiver = layer(capacity=2, expiry=60), layer(capacity=2, expiry=60)
        channel = await receiver.new_channel()
        key = sender.prefix + sender.non_local_name(channel)
        stale = time.time() - 120  # two messages sent two minutes ago fill the channel; its key lives on
        redis = sender.connection(sender.consistent_hash(channel))
        for i in range(2):
            await redis.zadd(key, {sender.serialize({"type": "frame", "i": -i, "__asgi_channel__": channel}): stale})
        await sender.send(channel, {"type": "frame", "i": 2})  # the send drops them before counting
        first = (await receiver.receive(channel))["i"]
        left = await redis.zcard(key)
        return first, left

    assert run(go()) == (2, 0)


def test_groups_still_reach_their_members():
    async def go():
        receiver = layer()
        channel = await receiver.new_channel()
        group = f"test-group-{time.monotonic_ns()}"
        await receiver.group_add(group, channel)
        await layer().group_send(group, {"type": "frame", "i": 7})
        got = (await receiver.receive(channel))["i"]
        await receiver.group_discard(group, channel)
        return got

    assert run(go()) == 7


def test_the_messages_waiting_for_a_process_s_sockets_are_taken_in_one_round_trip(monkeypatch):
    """channels_redis took four trips a message (cleanup, pop, backup write, backup delete), its sockets
    taking turns under one lock; a web process receives every frame of its sockets' replies this way
    (at 500 sockets with 20 calls it fell seconds behind its workers). Each socket still gets its own
    messages, once, in the order they were sent, however the batches fall."""
    from apps.realtime.layers import RECEIVE_BATCH

    async def go():
        sender, receiver = layer(), layer()
        sockets = [await receiver.new_channel() for _ in range(3)]
        await sender.send(sockets[0], {"type": "frame", "i": -1})
        await receiver.receive(sockets[0])  # the first loads the script into Redis
        for i in range(RECEIVE_BATCH + 11):  # more than one batch
            await sender.send(sockets[i % 3], {"type": "frame", "i": i})
        redis = receiver.connection(receiver.consistent_hash(sockets[0]))
        commands = []
        execute = redis.execute_command

        async def counted(*args, **kwargs):
            commands.append(args[0])
            return await execute(*args, **kwargs)

        monkeypatch.setattr(redis, "execute_command", counted)
        received = {}
        for socket in sockets:  # each socket's task receives in turn, as they wake
            received[socket] = [(await receiver.receive(socket))["i"] for _ in range(25)]
        trips = list(commands)
        for socket in sockets:
            with pytest.raises(asyncio.TimeoutError):  # nothing more: each arrived once
                await asyncio.wait_for(receiver.receive(socket), 0.2)
        return [received[socket] for socket in sockets], trips

    received, trips = run(go())
    assert received == [list(range(k, RECEIVE_BATCH + 11, 3)) for k in range(3)]
    assert trips == ["EVALSHA", "EVALSHA"]  # two batches for 75 messages to three sockets


def test_a_group_s_message_in_the_middle_of_a_batch_reaches_each_member_and_the_rest_go_on():
    """A group's message names its members in this process as a list (channels_redis' group_send): a
    token's `token.replaced` or `access_ended` among a busy process's frames."""

    async def go():
        sender, receiver = layer(), layer()
        a, b = await receiver.new_channel(), await receiver.new_channel()
        group = f"test-group-{time.monotonic_ns()}"
        for channel in (a, b):
            await receiver.group_add(group, channel)
        await sender.send(a, {"type": "frame", "i": 1})
        await sender.group_send(group, {"type": "frame", "i": 2})
        await sender.send(b, {"type": "frame", "i": 3})
        await sender.send(a, {"type": "frame", "i": 4})
        got_a = [(await asyncio.wait_for(receiver.receive(a), 5))["i"] for _ in range(3)]
        got_b = [(await asyncio.wait_for(receiver.receive(b), 5))["i"] for _ in range(2)]
        await receiver.group_discard(group, a)
        await receiver.group_discard(group, b)
        return got_a, got_b

    assert run(go()) == ([1, 2, 4], [2, 3])


def test_a_receive_cut_short_after_the_pop_loses_nothing():
    """A socket's task is cancelled while it receives for the whole process (its client left): the
    messages popped for the process stay in the backup and the next receive hands them over, once."""

    async def go():
        sender, receiver = layer(), layer()
        channel = await receiver.new_channel()
        for i in range(3):
            await sender.send(channel, {"type": "frame", "i": i})
        key = receiver.prefix + receiver.non_local_name(channel)
        # The pop ran in Redis, but its answer never reached the receiver (as if cancelled there).
        handed_over = dict(receiver._handed_over)
        popped = await receiver._pop_batch(receiver.consistent_hash(channel), key)
        receiver._handed_over = handed_over
        received = [(await receiver.receive(channel))["i"] for _ in range(3)]
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(receiver.receive(channel), 0.3)
        # A batch that was handed over is not put back by the next pop.
        await sender.send(channel, {"type": "frame", "i": 3})
        after = (await receiver.receive(channel))["i"]
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(receiver.receive(channel), 0.3)
        return len(popped), received, after

    assert run(go()) == (3, [0, 1, 2], 3)


def test_a_receive_waits_for_a_message_sent_later():
    async def go():
        sender, receiver = layer(), layer()
        channel = await receiver.new_channel()
        waiting = asyncio.ensure_future(receiver.receive(channel))
        await asyncio.sleep(0.2)
        assert not waiting.done()
        await sender.send(channel, {"type": "frame", "i": 9})
        return (await asyncio.wait_for(waiting, 5))["i"]

    assert run(go()) == 9
