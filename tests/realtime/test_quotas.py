"""Quotas on the socket, counted in the real Redis cache: turns, memory searches, open sockets per
user and per address, the deadline to authenticate, and the per-socket audio allowance."""

import asyncio
import base64
import time

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator

from apps.accounts.services import token_create
from apps.conversations.models import Message
from personatalk.asgi import application
from tests.realtime import client
from tests.realtime.client import connect, connected_socket, dumps, open_socket, send_raw, types, until_turn_end
from tests.speech import silence

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]


def b64(pcm: bytes) -> str:
    return base64.b64encode(pcm).decode()


async def say(comm, content: str) -> list[dict]:
    await comm.send_json_to({"type": "message", "content": content})
    return await until_turn_end(comm)


def assert_rate_limited(frame: dict, *, at_most: float) -> float:
    assert frame["type"] == "error" and frame["code"] == "rate_limited", frame
    assert set(frame) == {"type", "code", "message", "retry_after"}
    assert 0 < frame["retry_after"] <= at_most, frame
    return frame["retry_after"]


async def key_for(django_user_model, username: str) -> str:
    person = await django_user_model.objects.acreate(username=username)
    return (await sync_to_async(token_create)(user=person, name="t")).key


@pytest.mark.usefixtures("llm_worker")
async def test_turns_per_user_text_and_voice_reset_after_the_window(
    settings, user, api_key, character, django_user_model
):
    # A window long enough that two turns on a busy box (the full suite) end inside it.
    settings.QUOTA_TURNS, settings.QUOTA_WINDOW_S = 2, 20.0
    comm = await connected_socket(api_key)
    for n in range(2):
        assert types(await say(comm, f"Tell me about star {n}"))[-1] == "turn_end"
    refused = await send_raw(comm, dumps({"type": "message", "content": "One more?"}))
    retry_after = assert_rate_limited(refused, at_most=20.0)
    # a voice turn counts against the same quota, refused before anything is queued
    refused = await send_raw(comm, dumps({"type": "audio_message", "audio_base64": b64(silence(0.5))}))
    assert_rate_limited(refused, at_most=20.0)
    assert await send_raw(comm, dumps({"type": "ping"})) == {"type": "pong"}  # no asr_start came first
    assert await Message.objects.filter(session__user=user, role="user").acount() == 2  # nothing saved

    other = await connected_socket(await key_for(django_user_model, "bob"))  # per user: bob is not limited
    assert types(await say(other, "Hello from Bob"))[0] == "thinking"

    await asyncio.sleep(retry_after + 0.1)
    assert types(await say(comm, "And now?"))[-1] == "turn_end"  # a new window
    assert await Message.objects.filter(session__user=user, role="user").acount() == 3


@pytest.mark.usefixtures("memory_worker")
async def test_memory_searches_per_user_on_the_socket_and_rest_share_a_quota(
    settings, api_key, character, async_client, django_user_model
):
    settings.QUOTA_MEMORY_SEARCHES, settings.QUOTA_WINDOW_S = 2, 30.0
    comm = await connected_socket(api_key)
    search = dumps({"type": "memories_list", "query": "where do I live?"})
    assert (await send_raw(comm, search))["type"] == "memories"
    assert (await send_raw(comm, dumps({"type": "memories_list"})))["type"] == "memories"  # listing is free
    auth = {"Authorization": f"Bearer {api_key}"}
    found = await async_client.get("/api/memories", {"character": "nova", "q": "home"}, headers=auth)
    assert found.status_code == 200, found.content

    assert_rate_limited(await send_raw(comm, search), at_most=30.0)
    refused = await async_client.get("/api/memories", {"character": "nova", "q": "home"}, headers=auth)
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "rate_limited"
    assert 0 < float(refused["Retry-After"]) <= 30
    assert (await async_client.get("/api/memories", headers=auth)).status_code == 200  # listing still works

    other = await connected_socket(await key_for(django_user_model, "bob"))
    assert (await send_raw(other, search))["type"] == "memories"


async def test_open_sockets_per_user_token_and_cookie_alike(settings, user, character, django_user_model):
    settings.QUOTA_SOCKETS_PER_USER, settings.QUOTA_SOCKET_TTL_S = 2, 30
    keys = [(await sync_to_async(token_create)(user=user, name=f"device {i}")).key for i in range(3)]
    first = await connected_socket(keys[0])
    cookie = await open_socket(await _cookie_headers(user))
    assert (await connect(cookie))["type"] == "connected"

    third = await open_socket()
    assert_rate_limited(await connect(third, api_key=keys[2]), at_most=30)
    assert await third.receive_output(timeout=5) == {"type": "websocket.close", "code": 4029}

    await connected_socket(await key_for(django_user_model, "bob"))  # another user is not affected
    await send_raw(first, dumps({"type": "ping"}))  # the first two work on
    await first.disconnect()
    client.OPEN.remove(first)
    fourth = await connected_socket(keys[2])  # a closed socket frees its place at once
    assert await send_raw(fourth, dumps({"type": "ping"})) == {"type": "pong"}


async def _cookie_headers(user):
    from django.test import Client

    browser = Client()
    await sync_to_async(browser.force_login)(user)
    cookie = f"sessionid={browser.cookies['sessionid'].value}".encode()
    return [(b"cookie", cookie), (b"host", b"127.0.0.1:8000"), (b"origin", b"http://127.0.0.1:8000")]


async def test_a_socket_that_does_not_authenticate_in_time_is_closed(settings, api_key, character):
    settings.WS_AUTH_TIMEOUT_S = 2.0  # the authenticated socket has that long to connect, on a slow machine too
    bare = await open_socket()
    talking = await open_socket()
    assert (await send_raw(talking, dumps({"type": "ping"})))["code"] == "not_connected"  # frames are not a login
    opened = time.monotonic()
    authed = await connected_socket(api_key)
    for comm in (bare, talking):
        assert await comm.receive_json_from(timeout=5) == {"type": "disconnected", "reason": "auth_timeout"}
        assert await comm.receive_output(timeout=5) == {"type": "websocket.close", "code": 4008}
    await asyncio.sleep(max(0.0, opened + settings.WS_AUTH_TIMEOUT_S + 0.3 - time.monotonic()))  # past its own timer
    assert await send_raw(authed, dumps({"type": "ping"})) == {"type": "pong"}  # authenticated in time: stays


async def socket_from(address: str) -> WebsocketCommunicator:
    comm = WebsocketCommunicator(application, "/ws")
    comm.scope["client"] = (address, 50000)  # what Daphne puts in the scope (--proxy-headers: the real one)
    assert (await comm.connect(timeout=5))[0]
    client.OPEN.append(comm)
    return comm


async def test_open_sockets_per_client_address_authenticated_or_not(settings, api_key, character):
    settings.QUOTA_SOCKETS_PER_ADDRESS = 3
    held = [await socket_from("203.0.113.7") for _ in range(3)]  # bare sockets count
    for comm in held:  # a frame is answered once the socket's connect (its slot claim) is done
        assert (await send_raw(comm, dumps({"type": "ping"})))["code"] == "not_connected"
    refused = await socket_from("203.0.113.7")
    assert_rate_limited(await refused.receive_json_from(timeout=5), at_most=settings.QUOTA_SOCKET_TTL_S)
    assert await refused.receive_output(timeout=5) == {"type": "websocket.close", "code": 4029}

    elsewhere = await socket_from("198.51.100.20")
    assert (await connect(elsewhere, api_key=api_key))["type"] == "connected"
    await held[0].disconnect()
    client.OPEN.remove(held[0])
    again = await socket_from("203.0.113.7")
    assert (await connect(again, api_key=api_key))["type"] == "connected"  # admitted this time


async def test_the_audio_allowance_survives_stream_and_call_restarts(settings, api_key, character):
    settings.AUDIO_MAX_RATE_FACTOR = 0.5  # refills at half real time: 1 s of audio takes 2 s to earn back
    comm = await connected_socket(api_key)
    await send_raw(comm, dumps({"type": "audio_stream_start"}))
    chunk = dumps({"type": "audio_stream_chunk", "audio_base64": b64(silence(1.0))})
    await comm.send_to(text_data=chunk)
    await comm.send_to(text_data=chunk)  # the 2 s burst
    over = await send_raw(comm, chunk)
    assert over["code"] == "audio_rate_exceeded" and 0.5 < over["retry_after"] <= 2.0, over

    # pressing push-to-talk again, or starting a call, does not refill the allowance
    assert (await send_raw(comm, dumps({"type": "audio_stream_start"})))["type"] == "audio_stream_started"
    assert (await send_raw(comm, chunk))["code"] == "audio_rate_exceeded"
    assert (await send_raw(comm, dumps({"type": "voice_call_start"})))["type"] == "voice_call_listening"
    call_chunk = dumps({"type": "voice_call_audio_chunk", "audio_base64": b64(silence(1.0))})
    assert (await send_raw(comm, call_chunk))["code"] == "audio_rate_exceeded"
    await comm.send_to(bytes_data=silence(1.0))
    assert (await comm.receive_json_from())["code"] == "audio_rate_exceeded"

    await asyncio.sleep(over["retry_after"] + 0.2)  # earned back at the configured rate
    await comm.send_json_to({"type": "voice_call_audio_chunk", "audio_base64": b64(silence(1.0))})
    assert await send_raw(comm, dumps({"type": "ping"})) == {"type": "pong"}  # accepted: no error came first


async def test_a_live_socket_keeps_its_place_past_the_ttl_and_a_closed_one_frees_it(settings, user, character):
    """The process refreshes its sockets' places together (one Redis pipeline a third of the TTL)."""
    from django.core.cache import cache

    settings.QUOTA_SOCKETS_PER_USER, settings.QUOTA_SOCKET_TTL_S = 1, 2
    key = f"sockets:user:{user.pk}:0"
    live = await connected_socket((await sync_to_async(token_create)(user=user, name="phone")).key)
    await asyncio.sleep(3.5)  # past the TTL: the place was refreshed, not lapsed
    assert await sync_to_async(cache.get)(key) is not None
    refused = await open_socket()
    assert_rate_limited(
        await connect(refused, api_key=(await sync_to_async(token_create)(user=user, name="tablet")).key), at_most=2
    )
    await live.disconnect()
    client.OPEN.remove(live)
    assert await sync_to_async(cache.get)(key) is None
