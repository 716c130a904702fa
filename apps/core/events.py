"""Send events to a socket's channel from synchronous code (jobs, and the edge's worker threads), and
wait for a job's one answer on a channel of its own (the web edge asks the workers, which hold the models).

One event loop per process, on a daemon thread, makes the channel layer, so a streaming job does not
pay for a new loop and Redis connection on every message. Any number of threads may send at once (an
LLM worker streams many turns, each in a thread of its own): to Redis each from its own thread through
the layer's blocking client, to the in-memory layer as a coroutine on that loop.
"""

import asyncio
import os
import threading
import time
from collections.abc import Iterator

from asgiref.sync import sync_to_async
from channels.exceptions import ChannelFull
from channels.layers import DEFAULT_CHANNEL_LAYER, channel_layers, get_channel_layer
from django.conf import settings

from apps.realtime.protocol import Event
from workers.dispatch import enqueue

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None


def _forget_loop() -> None:
    """A forked child has the loop but not the thread that runs it (a Celery worker's parent may
    have published before it starts a pool process): the child starts its own."""
    global _loop, _lock
    _loop, _lock = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_loop)


def _publisher_loop() -> asyncio.AbstractEventLoop:
    global _loop
    loop = _loop
    if loop is not None and not loop.is_closed():  # the common case, without the lock
        return loop
    with _lock:
        if _loop is None or _loop.is_closed():
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="channel-publisher", daemon=True).start()
            _loop = loop
        return _loop


def channel_send(channel: str, event: Event, *, timeout: float = 10.0, full_wait_s: float | None = None) -> None:
    """Send `event` to `channel` and wait until the layer has taken it (keeps events in order).

    A full channel is a web process behind on its sockets' frames: the send waits for it to drain, up
    to CHANNEL_FULL_WAIT_S, and so slows the job down instead of ending its turn. (Under 500 sockets
    with 20 voice calls on 2 cores, Daphne fell seconds behind and replies that met a full channel
    stopped there, their sockets left waiting for a `turn_end`.)

    `full_wait_s` overrides that wait: 0 where the sender must not be held (the web process's own sync
    thread, which every socket's database work shares).

    Raises what the layer raises (ChannelFull past that wait, a Redis error, a timeout): callers
    decide what an unreachable socket means for their job. Through the loop, a send that timed out
    (`timeout`) is cancelled, so it cannot arrive after its caller gave the socket up; sent from this
    thread (Redis), Redis' own client gives up after the layer's SEND_TIMEOUT_S.
    """
    message = event.message()
    full_wait_s = settings.CHANNEL_FULL_WAIT_S if full_wait_s is None else full_wait_s
    # Redis: sent from this thread (apps/realtime/layers.py says why), once the loop has built the layer
    # (Channels builds it on first use without a lock: threads at once could each build one).
    layer = channel_layers.backends.get(DEFAULT_CHANNEL_LAYER)
    if hasattr(layer, "send_blocking"):
        for pause in _full_pauses(full_wait_s):
            try:
                return layer.send_blocking(channel, message)
            except ChannelFull:
                if pause is None:
                    raise
                time.sleep(pause)
    future = asyncio.run_coroutine_threadsafe(_send(channel, message, full_wait_s), _publisher_loop())
    try:
        future.result(timeout + full_wait_s)
    except TimeoutError:
        future.cancel()
        raise


def _full_pauses(full_wait_s: float) -> Iterator[float | None]:
    """How long to wait before each retry of a send to a full channel (doubling, at most 0.2 s), within
    `full_wait_s`; None when there is no time for another."""
    deadline, pause = time.monotonic() + full_wait_s, 0.01
    while time.monotonic() + pause <= deadline:
        yield pause
        pause = min(pause * 2, 0.2)
    yield None


async def _send(channel: str, message: dict, full_wait_s: float) -> None:
    # Looked up on the loop's thread: Channels builds a layer on first use without a lock, so threads
    # asking for it at once could each build one (with connections of its own).
    layer = get_channel_layer()
    for pause in _full_pauses(full_wait_s):
        try:
            return await layer.send(channel, message)
        except ChannelFull:
            if pause is None:
                raise
            await asyncio.sleep(pause)


async def queue_and_wait(task: str, timeout: float, **kwargs) -> dict:
    """Queue the task named `task` with a reply channel and wait for its one answer (a protocol Event's message).

    Raises TimeoutError when no answer came within `timeout` seconds.
    """
    layer = get_channel_layer()
    # The default prefix: channels_redis receives every process-local channel sharing a prefix with one
    # BZPOPMIN; a "rest." channel would wait for the lock held by the sockets' receive until one of them
    # gets a message (a REST search on a process with an open, idle socket timed out).
    channel = await layer.new_channel()
    await sync_to_async(enqueue)(task, reply_channel=channel, **kwargs)
    return await asyncio.wait_for(layer.receive(channel), timeout)
