"""The channel layers: in memory, sendable from worker threads (the embedded mode); Redis, sending in
one round trip and receiving in one or two (the scaled mode)."""

import asyncio
import hashlib
import threading
import time

import redis
from channels.exceptions import ChannelFull
from channels.layers import InMemoryChannelLayer
from channels_redis.core import RedisChannelLayer
from redis.commands.core import AsyncScript, Script  # called with each loop's own connection: EVALSHA

# channels_redis' `send`, as one script: drop the channel's expired messages, refuse a full channel,
# add the message (scored by its send time: receivers pop the lowest first) and renew the key's expiry.
_SEND_LUA = b"""
redis.call('ZREMRANGEBYSCORE', KEYS[1], 0, ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
    return 0
end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[5])
return 1
"""
_SEND = AsyncScript(None, _SEND_LUA)
_SEND_BLOCKING = Script(None, _SEND_LUA)  # the same, from a thread without an event loop

# channels_redis' receive, the part that does not block, as one script: put back in order what a
# cancelled receive left in the backup, except the message the last receive delivered (ARGV[1], its
# SHA-1: the backup holds one or two entries), then pop the oldest message, keeping it in the backup
# until the next receive knows it was delivered.
_POP = AsyncScript(
    None,
    b"""
local backed_up = redis.call('ZRANGE', KEYS[2], 0, -1, 'WITHSCORES')
for i = #backed_up, 1, -2 do
    if ARGV[1] == '' or redis.sha1hex(backed_up[i - 1]) ~= ARGV[1] then
        redis.call('ZADD', KEYS[1], backed_up[i], backed_up[i - 1])
    end
end
redis.call('DEL', KEYS[2])
local popped = redis.call('ZPOPMIN', KEYS[1])
if popped[1] then
    redis.call('ZADD', KEYS[2], popped[2], popped[1])
    redis.call('EXPIRE', KEYS[2], ARGV[2])
    return popped[1]
end
return false
""",
)


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
    """channels_redis' layer whose `send` takes one round trip to Redis instead of four, and whose
    receive takes one where a message is waiting (two where it must wait) instead of four.

    Every frame of a reply reaches its socket through `send` (a worker's text, sentences, audio), and
    the first of them is on the turn's critical path: four round trips in a row (~0.3 ms each, with the
    coroutine's scheduling between them) became one script with the same effect, atomic besides.

    A web process receives every frame for its sockets on its own channel, which channels_redis reads as
    a cleanup script, a blocking pop, a backup write and, once the message is handed over, a backup
    delete: four round trips a frame, in a row (bench/load.py at 100 sockets: ~100 frames a second,
    a quarter of Daphne's samples in socket writes to Redis). Here the delete rides on the next
    receive's script, which pops too; only an empty channel needs the blocking pop after it, and that
    message is handed over with no await between (a backup write there guarded only its own trip).
    What a receive cancelled mid-way leaves in the backup is put back first, as before. General channels
    (shared by processes) and groups are channels_redis' own.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._delivered: dict[str, str] = {}  # process channel key -> SHA-1 of the message last handed over

    async def _brpop_with_clean(self, index, channel, timeout):
        if not channel.endswith("!"):
            # A general channel may have receivers in other processes, whose cleanup would put back a
            # message this one delivered but had not yet forgotten: channels_redis' own receive there
            # (which shares that risk for the round trip before its backup delete; our sockets and
            # workers receive on process channels only).
            return await super()._brpop_with_clean(index, channel, timeout)
        connection = self.connection(index)
        delivered = self._delivered.get(channel, "")
        member = await _POP(
            keys=[channel, self._backup_channel_name(channel)], args=[delivered, int(self.expiry)], client=connection
        )
        # Only now: had the script been cancelled unrun, the next one must still forget `delivered`.
        self._delivered.pop(channel, None)
        if member is not None:
            self._delivered[channel] = hashlib.sha1(member).hexdigest()  # handed over once this returns
            return member
        result = await connection.bzpopmin(channel, timeout=timeout)
        return None if result is None else result[1]

    async def _clean_receive_backup(self, index, channel):
        """For this process's channel, nothing: its next receive's script forgets the delivered message."""
        if not channel.endswith("!"):
            await super()._clean_receive_backup(index, channel)

    async def send(self, channel, message):
        index, key, args = self._send_args(channel, message)
        if not await _SEND(keys=[key], args=args, client=self.connection(index)):
            raise ChannelFull()

    def send_blocking(self, channel, message) -> None:
        """`send` from a thread, in it: a worker streaming many turns sends each frame from the turn's
        own thread, where handing it to an event loop's thread and waiting for it there took a quarter
        of the worker's GIL at 500 sockets (the hand-over, the wake-up, asyncio's Redis client)."""
        index, key, args = self._send_args(channel, message)
        if not _SEND_BLOCKING(keys=[key], args=args, client=self._blocking_client(index)):
            raise ChannelFull()

    def _send_args(self, channel, message) -> tuple[int, str, list]:
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
        args = [int(now) - int(self.expiry), self.get_capacity(channel), now, self.serialize(message), int(self.expiry)]
        return index, self.prefix + key, args

    def _blocking_client(self, index: int) -> redis.Redis:
        """A thread-safe client (its pool hands each thread a connection) to the host `index`."""
        clients = self.__dict__.setdefault("_blocking_clients", {})
        if index not in clients:
            with _blocking_lock:
                if index not in clients:
                    clients[index] = _blocking_redis(dict(self.hosts[index]))
        return clients[index]


_blocking_lock = threading.Lock()


SEND_TIMEOUT_S = 10.0  # as `channel_send` waits on the loop's path; the hosts' 15 s is for the receive's block


def _blocking_redis(host: dict) -> redis.Redis:
    """channels_redis' `create_pool` for redis-py's blocking client (an address, a Sentinel, or a pool's
    kwargs), its reads and connects bounded by SEND_TIMEOUT_S."""
    host = {**host, "socket_timeout": SEND_TIMEOUT_S, "socket_connect_timeout": SEND_TIMEOUT_S}
    if "address" in host:
        return redis.Redis.from_url(host.pop("address"), **host)
    if "master_name" in host:
        from redis.sentinel import Sentinel

        master, sentinels = host.pop("master_name"), host.pop("sentinels")
        return Sentinel(sentinels, sentinel_kwargs=host.pop("sentinel_kwargs", None)).master_for(master, **host)
    return redis.Redis(connection_pool=redis.ConnectionPool(**host))
