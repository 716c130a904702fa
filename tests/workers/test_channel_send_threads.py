"""The process's channel-layer publisher under many turns at once (an llm worker's threads): every
thread's events reach its own channel, all of them, in the order that thread sent them."""

import threading
import uuid

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from apps.core.events import channel_send
from apps.realtime import protocol as p

THREADS, EVENTS = 32, 25


def test_threads_sending_at_once_each_reach_their_own_channel_in_order():
    channels = [f"test.threads.{uuid.uuid4().hex}" for _ in range(THREADS)]
    start = threading.Barrier(THREADS)
    failures = []

    def turn(channel: str) -> None:
        try:
            start.wait()
            for n in range(EVENTS):
                channel_send(channel, p.TurnFrames(turn_id=channel, frames=[p.TextDelta(content=f"{n} ")]))
        except Exception as exc:  # noqa: BLE001 - reported below, with the thread's channel
            failures.append((channel, exc))

    threads = [threading.Thread(target=turn, args=(channel,)) for channel in channels]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not failures

    received = async_to_sync(receive_all)(channels)
    for channel in channels:
        assert {event["turn_id"] for event in received[channel]} == {channel}  # nobody else's
        assert [event["frames"][0]["content"] for event in received[channel]] == [f"{n} " for n in range(EVENTS)]


async def receive_all(channels: list[str]) -> dict[str, list[dict]]:
    layer = get_channel_layer()
    return {channel: [await layer.receive(channel) for _ in range(EVENTS)] for channel in channels}
