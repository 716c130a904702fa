"""Connection, authentication and every kind of bad input on /ws (no model needed)."""

import pytest
from asgiref.sync import sync_to_async
from django.test import override_settings

from apps.accounts.services import token_create, token_revoke
from tests.realtime.client import connect, connected_socket, dumps, open_socket, send_raw

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]


async def assert_usable(comm):
    assert await send_raw(comm, dumps({"type": "ping"})) == {"type": "pong"}


async def test_connect_with_token_sends_connected_first(api_key, character):
    comm = await open_socket()
    frame = await connect(comm, api_key=api_key)
    assert frame["type"] == "connected"
    assert frame["character"] == "nova"
    assert frame["character_display_name"] == "Nova"
    assert frame["message"] == "Hi! I'm Nova."
    assert frame["session_id"]
    await assert_usable(comm)
    await comm.disconnect()


async def test_character_name_matches_display_name_too(api_key, character):
    comm = await open_socket()
    assert (await connect(comm, api_key=api_key, character="NOVA"))["character"] == "nova"
    await comm.disconnect()


@pytest.mark.parametrize("key", ["wrong-token", ""])
async def test_bad_token_is_an_error_then_close_4001(key, character, api_key):
    comm = await open_socket()
    frame = await connect(comm, api_key=key or None)
    assert frame == {"type": "error", "code": "auth_failed", "message": frame["message"]}
    assert (await comm.receive_output(timeout=2)) == {"type": "websocket.close", "code": 4001}


async def test_revoked_token_fails(user, character):
    issued = await sync_to_async(token_create)(user=user, name="old")
    await sync_to_async(token_revoke)(token=issued.token)
    comm = await open_socket()
    assert (await connect(comm, api_key=issued.key))["code"] == "auth_failed"


async def test_frames_before_connect_are_refused_but_socket_stays(api_key, character):
    comm = await open_socket()
    frame = await send_raw(comm, dumps({"type": "message", "content": "hi"}))
    assert frame["type"] == "error" and frame["code"] == "not_connected"
    assert (await connect(comm, api_key=api_key))["type"] == "connected"
    await comm.disconnect()


@pytest.mark.parametrize(
    "raw, code",
    [
        ("{not json", "invalid_json"),
        ("[1, 2]", "invalid_frame"),
        ('{"content": "no type"}', "invalid_frame"),
        ('{"type": 7}', "invalid_frame"),
        ('{"type": "dance"}', "unknown_type"),
        ('{"type": "message"}', "missing_field"),
        ('{"type": "message", "content": 5}', "invalid_field"),
        ('{"type": "message", "content": "   "}', "empty_message"),
        ('{"type": "switch_character"}', "missing_field"),
        ('{"type": "switch_character", "character_name": "nobody"}', "unknown_character"),
        ('{"type": "connect", "character_name": "nova"}', "already_connected"),
    ],
)
async def test_bad_frames_get_a_stable_error_code_and_socket_stays_usable(raw, code, api_key, character):
    comm = await connected_socket(api_key)
    frame = await send_raw(comm, raw)
    assert frame["type"] == "error"
    assert frame["code"] == code, frame
    assert frame["message"]
    await assert_usable(comm)
    await comm.disconnect()


async def test_over_long_message(api_key, character):
    comm = await connected_socket(api_key)
    with override_settings(WS_MAX_MESSAGE_CHARS=10):
        frame = await send_raw(comm, dumps({"type": "message", "content": "x" * 11}))
    assert frame["code"] == "message_too_long"
    await assert_usable(comm)


async def test_frame_over_size_limit(api_key, character):
    comm = await connected_socket(api_key)
    with override_settings(WS_MAX_FRAME_BYTES=1000):
        frame = await send_raw(comm, dumps({"type": "message", "content": "é" * 600}))
    assert frame["code"] == "frame_too_large"
    await assert_usable(comm)


async def test_binary_frames_outside_a_stream_or_call_are_refused(api_key, character):
    comm = await connected_socket(api_key)
    await comm.send_to(bytes_data=b"\x00\x01")
    assert (await comm.receive_json_from())["code"] == "binary_not_expected"
    await assert_usable(comm)


async def test_unknown_character_on_connect_keeps_socket(api_key, character):
    comm = await open_socket()
    frame = await connect(comm, api_key=api_key, character="nobody")
    assert frame["code"] == "unknown_character"
    assert (await connect(comm, api_key=api_key))["type"] == "connected"
    await comm.disconnect()


async def test_unpublished_character_only_for_staff(user, api_key, draft_character, django_user_model):
    comm = await open_socket()
    assert (await connect(comm, api_key=api_key, character="draft"))["code"] == "unknown_character"
    staff = await django_user_model.objects.acreate(username="staff", is_staff=True, is_superuser=True)
    staff_key = (await sync_to_async(token_create)(user=staff, name="s")).key
    comm2 = await open_socket()
    assert (await connect(comm2, api_key=staff_key, character="draft"))["type"] == "connected"
    await comm2.disconnect()


async def test_second_socket_with_same_token_replaces_the_first(api_key, character):
    first = await connected_socket(api_key)
    second = await connected_socket(api_key)
    assert await first.receive_json_from(timeout=5) == {"type": "disconnected", "reason": "new_connection"}
    assert (await first.receive_output(timeout=2)) == {"type": "websocket.close", "code": 4009}
    await assert_usable(second)
    await second.disconnect()


async def test_other_tokens_of_same_user_are_independent(user, api_key, character):
    other_key = (await sync_to_async(token_create)(user=user, name="phone")).key
    first = await connected_socket(api_key)
    second = await connected_socket(other_key)
    assert await first.receive_nothing(timeout=0.3)
    await assert_usable(first)
    await first.disconnect()
    await second.disconnect()


async def _cookie_headers(user, origin):
    from django.test import Client

    client = Client()
    await sync_to_async(client.force_login)(user)
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()
    headers = [(b"cookie", cookie), (b"host", b"127.0.0.1:8000")]
    if origin:
        headers.append((b"origin", origin.encode()))
    return headers


async def test_cookie_auth_from_same_origin(user, character):
    comm = await open_socket(await _cookie_headers(user, "http://127.0.0.1:8000"))
    assert (await connect(comm))["type"] == "connected"
    await comm.disconnect()


@pytest.mark.parametrize("origin", ["http://evil.example", None])
async def test_cookie_auth_from_foreign_or_missing_origin_is_closed(user, character, origin):
    comm = await open_socket(await _cookie_headers(user, origin))
    assert (await connect(comm))["code"] == "origin_not_allowed"
    assert (await comm.receive_output(timeout=2)) == {"type": "websocket.close", "code": 4003}


async def test_no_cookie_no_token_fails(character):
    comm = await open_socket([(b"origin", b"http://127.0.0.1:8000")])
    assert (await connect(comm))["code"] == "auth_failed"


async def test_frames_that_need_no_database_make_no_trip_to_the_sync_thread(api_key, character, monkeypatch):
    """Channels closes stale database connections before every message it dispatches: a trip to the one
    thread-sensitive sync thread for each microphone frame and text delta, where a turn's database work
    then queues. The socket's handlers reach the database only through database_sync_to_async, which
    closes them itself; a ping needs no trip at all."""
    from asgiref.sync import SyncToAsync

    trips, call = [], SyncToAsync.__call__

    async def counted(self, *args, **kwargs):
        trips.append(getattr(self.func, "__name__", repr(self.func)))
        return await call(self, *args, **kwargs)

    monkeypatch.setattr(SyncToAsync, "__call__", counted)
    comm = await connected_socket(api_key)
    before = len(trips)
    for _ in range(30):
        await assert_usable(comm)
    # was one a frame: channels' close_old_connections (a no-op under channels.testing); the access
    # re-check's own trip, due every few seconds, is not one of these
    assert [t for t in trips[before:] if t in ("close_old_connections", "no_op")] == []
    await comm.disconnect()
