"""An in-memory channel layer that worker threads can send to (the embedded mode)."""

import asyncio

from channels.layers import InMemoryChannelLayer


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
