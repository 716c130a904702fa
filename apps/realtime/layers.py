"""The channel layers: in memory, sendable from worker threads (the embedded mode); Redis, sending in
one round trip (the scaled mode)."""

import asyncio
import time

from channels.exceptions import ChannelFull
from channels.layers import InMemoryChannelLayer
from channels_redis.core import RedisChannelLayer

# channels_redis' `send`, as one script: drop the channel's expired messages, refuse a full channel,
# add the message (scored by its send time: receivers pop the lowest first) and renew the key's expiry.
_SEND = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], 0, ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
    return 0
end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[5])
return 1
"""


class ThreadSafeInMemoryChannelLayer(InMemoryChannelLayer):
    """InMemoryChannelLayer whose send/group_send may be awaited from any thread's event loop.

    The base layer's asyncio queues belong to the loop that serves the sockets; in-process tasks
    run in threads with loops of their own, so their sends are handed over to the serving loop.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._serving_loop: asyncio.AbstractEventLoop | None = None

    async def receive(self, channel):
        self._serving_loop = asyncio.get_running_loop()
        return await super().receive(channel)

    async def _on_serving_loop(self, coro):
        loop = self._serving_loop
        if loop is None or loop is asyncio.get_running_loop() or loop.is_closed():
            return await coro
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, loop))

    async def send(self, channel, message):
        return await self._on_serving_loop(super().send(channel, message))

    async def group_send(self, group, message):
        return await self._on_serving_loop(super().group_send(group, message))


class OneTripRedisChannelLayer(RedisChannelLayer):
    """channels_redis' layer whose `send` takes one round trip to Redis instead of four.

    Every frame of a reply reaches its socket through `send` (a worker's text, sentences, audio), and
    the first of them is on the turn's critical path: four round trips in a row (~0.3 ms each, with the
    coroutine's scheduling between them) became one script with the same effect, atomic besides.
    Receiving and groups are channels_redis' own.
    """

    async def send(self, channel, message):
        assert isinstance(message, dict), "message is not a dict"
        assert self.require_valid_channel_name(channel), "Channel name not valid"
        assert "__asgi_channel__" not in message
        key = channel
        if "!" in channel:  # a process-local channel: its full name travels in the message
            message = {**message, "__asgi_channel__": channel}
            index, key = self.consistent_hash(channel), self.non_local_name(channel)
        else:
            index = next(self._send_index_generator)
        now = time.time()
        added = await self.connection(index).eval(
            _SEND,
            1,
            self.prefix + key,
            int(now) - int(self.expiry),
            self.get_capacity(channel),
            now,
            self.serialize(message),
            int(self.expiry),
        )
        if not added:
            raise ChannelFull()
