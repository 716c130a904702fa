"""The channel layers: in memory, sendable from worker threads (the embedded mode); Redis, sending in
one round trip and receiving in one or two (the scaled mode)."""

import asyncio
import logging
import threading
import time
import uuid

import redis
from channels.exceptions import ChannelFull
from channels.layers import InMemoryChannelLayer
from channels_redis.core import RedisChannelLayer
from redis.commands.core import AsyncScript, Script  # called with each loop's own connection: EVALSHA

log = logging.getLogger(__name__)

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

# channels_redis' receive, the part that does not block, for a whole process's channel at once: put back
# in order what the last pop left in the backup unless that batch was handed over (its token, ARGV[1],
# is the one Redis holds), then pop up to ARGV[3] of the oldest messages, keeping them in the backup
# under a new token (ARGV[4]) until the next pop knows they were handed over.
_POP_BATCH = AsyncScript(
    None,
    b"""
if (redis.call('GET', KEYS[3]) or '') ~= ARGV[1] then
    local backed_up = redis.call('ZRANGE', KEYS[2], 0, -1, 'WITHSCORES')
    for i = 1, #backed_up, 2 do
        redis.call('ZADD', KEYS[1], backed_up[i + 1], backed_up[i])
    end
end
redis.call('DEL', KEYS[2], KEYS[3])
local popped = redis.call('ZPOPMIN', KEYS[1], ARGV[3])
if popped[1] then
    local scored = {}
    for i = 1, #popped, 2 do
        scored[#scored + 1] = popped[i + 1]
        scored[#scored + 1] = popped[i]
    end
    redis.call('ZADD', KEYS[2], unpack(scored))
    redis.call('EXPIRE', KEYS[2], ARGV[2])
    redis.call('SET', KEYS[3], ARGV[4], 'EX', ARGV[2])
end
return popped
""",
)
RECEIVE_BATCH = 64  # messages a web process takes off its channel in one trip, at most


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
    """channels_redis' layer whose `send` takes one round trip to Redis instead of four, and whose web
    processes take every message waiting for their sockets in one round trip, not four per message.

    Every frame of a reply reaches its socket through `send` (a worker's text, sentences, audio), and
    the first of them is on the turn's critical path: four round trips in a row (~0.3 ms each, with the
    coroutine's scheduling between them) became one script with the same effect, atomic besides.

    A web process receives every frame for its sockets on its own channel. channels_redis reads it a
    message at a time (a cleanup script, a blocking pop, a backup write, a backup delete), and its
    sockets take turns at that under one lock: a few trips through the event loop per message. At 500
    sockets with 20 calls that capped Daphne at ~300 messages a second, below what its workers sent, and
    every reply's frames waited seconds in Redis. Here one script pops up to RECEIVE_BATCH messages and
    hands each to its socket's buffer in order; only an empty channel needs the blocking pop after it.
    What a pop cut short leaves in the backup (the script ran, its answer never came back) is put back
    by the next one, once. General channels (shared by processes) and groups are channels_redis' own.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._handed_over: dict[str, str] = {}  # process channel key -> token of the batch last handed over

    async def receive_single(self, channel):
        """For a process channel: the messages waiting, all handed to their sockets' buffers (the last of
        them returned, for channels_redis' `receive` to buffer as it does one message)."""
        if not channel.endswith("!"):
            return await super().receive_single(channel)
        assert self.require_valid_channel_name(channel, receive=True), "Channel name invalid"
        index, key = self.consistent_hash(channel), self.prefix + channel
        messages = []
        while not messages:
            members = await self._pop_batch(index, key)
            if not members:
                popped = await self.connection(index).bzpopmin(key, timeout=self.brpop_timeout)
                members = [] if popped is None else [popped[1]]
            messages = [message for message in map(self._unpack, members) if message is not None]
        *earlier, last = ((message.pop("__asgi_channel__", channel), message) for message in messages)
        for message_channel, message in earlier:
            # A group's message names the process's members that get it (a list), as channels_redis'
            # `receive` hands over the message it is given.
            for member_channel in message_channel if isinstance(message_channel, list) else [message_channel]:
                self.receive_buffer[member_channel].put_nowait(message)
        return last

    async def _pop_batch(self, index: int, key: str) -> list[bytes]:
        token = uuid.uuid4().hex
        popped = await _POP_BATCH(
            keys=[key, self._backup_channel_name(key), self._backup_channel_name(key) + "-token"],
            args=[self._handed_over.get(key, ""), int(self.expiry), RECEIVE_BATCH, token],
            client=self.connection(index),
        )
        # Only now: had the script been cancelled, run or unrun, the next one decides by the token in Redis.
        self._handed_over[key] = token
        return popped[0::2]

    def _unpack(self, member: bytes) -> dict | None:
        """The message, or None (logged) for one that will not decode: the rest of its batch goes on."""
        try:
            return self.deserialize(member)
        except Exception:
            log.exception("a channel message that would not decode was dropped")
            return None

    async def _clean_receive_backup(self, index, channel):
        """For this process's channel, nothing: its next pop forgets the batch handed over."""
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
