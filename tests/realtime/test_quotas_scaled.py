"""Quotas in the scaled mode: two real Daphne processes share the counts in Redis, and a process
killed with its sockets open frees their places within QUOTA_SOCKET_TTL_S."""

import asyncio
import json
import time

import pytest
import websockets

from apps.accounts.services import token_create
from tests import stack
from tests.conftest import LOG_DIR

pytestmark = pytest.mark.django_db(transaction=True)


async def open_and_connect(url: str, key: str):
    """(socket, first frame) after `connect`; the socket is left open."""
    ws = await websockets.connect(url.replace("http", "ws", 1) + "/ws")
    await ws.send(json.dumps({"type": "connect", "api_token": key, "character_name": "nova"}))
    return ws, json.loads(await asyncio.wait_for(ws.recv(), 10))


async def refused(url: str, key: str) -> dict:
    ws, frame = await open_and_connect(url, key)
    with pytest.raises(websockets.ConnectionClosed) as closed:
        await asyncio.wait_for(ws.recv(), 5)
    assert closed.value.rcvd.code == 4029
    return frame


def test_two_processes_share_the_counts_and_a_killed_one_leaks_none(live_env, user, character):
    env = {**live_env, "QUOTA_SOCKETS_PER_USER": "2", "QUOTA_SOCKET_TTL_S": "3", "QUOTA_MEMORY_SEARCHES": "1"}
    daphne_a, url_a = stack.start_daphne(env=env, log_dir=LOG_DIR)
    daphne_b, url_b = stack.start_daphne(env=env, log_dir=LOG_DIR)
    keys = [token_create(user=user, name=f"device {i}").key for i in range(3)]

    async def scenario():
        ws_a, frame = await open_and_connect(url_a, keys[0])
        assert frame["type"] == "connected"
        ws_b, frame = await open_and_connect(url_b, keys[1])
        assert frame["type"] == "connected"
        frame = await refused(url_b, keys[2])  # the user's third socket, whichever process it reaches
        assert frame["code"] == "rate_limited" and frame["retry_after"] == 3

        search = json.dumps({"type": "memories_list", "query": "where do I live?"})
        await ws_a.send(search)  # counted on A (queued for the embed queue)
        await ws_a.send(search)  # refused on A: the first one has been counted
        frame = json.loads(await asyncio.wait_for(ws_a.recv(), 5))
        assert frame.get("code") == "rate_limited", frame
        await ws_b.send(search)
        frame = json.loads(await asyncio.wait_for(ws_b.recv(), 5))  # refused on B: one count in Redis
        assert frame.get("code") == "rate_limited" and frame["retry_after"] > 0, frame

        daphne_a.popen.kill()  # dies without closing its socket
        daphne_a.popen.wait()
        assert (await refused(url_b, keys[2]))["code"] == "rate_limited"  # its place is still held...
        deadline = time.monotonic() + 15
        while True:  # ...until the dead process stops refreshing it
            ws, frame = await open_and_connect(url_b, keys[2])
            if frame["type"] == "connected":
                break
            assert frame["code"] == "rate_limited" and time.monotonic() < deadline, frame
            await asyncio.sleep(0.5)
        await ws.close()
        await ws_b.close()

    try:
        asyncio.run(scenario())
    finally:
        daphne_a.stop()
        daphne_b.stop()


def test_bare_sockets_on_a_real_daphne_are_capped_per_address_and_closed_unauthenticated(live_env):
    env = {**live_env, "QUOTA_SOCKETS_PER_ADDRESS": "10", "WS_AUTH_TIMEOUT_S": "1"}
    daphne, url = stack.start_daphne(env=env, log_dir=LOG_DIR)

    async def bare(_):
        """Open a socket, send nothing; how the server ends it: (first frame, close code)."""
        # from an address of its own (all of 127/8 is loopback): Daphne puts the peer's in the scope
        async with websockets.connect(url.replace("http", "ws", 1) + "/ws", local_addr=("127.0.0.9", 0)) as ws:
            frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 10)
            return frame, closed.value.rcvd.code

    async def flood():
        return await asyncio.gather(*map(bare, range(30)))

    try:
        endings = asyncio.run(flood())
    finally:
        daphne.stop()
    timed_out = [f for f, code in endings if code == 4008]
    refused = [f for f, code in endings if code == 4029]
    assert len(timed_out) == 10 and len(refused) == 20, endings  # 10 per address
    assert all(f == {"type": "disconnected", "reason": "auth_timeout"} for f in timed_out)
    assert all(f["code"] == "rate_limited" and f["retry_after"] > 0 for f in refused)
