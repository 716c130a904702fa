"""Frames a hostile or broken client sends: each gets a documented error code, never a 1011 close."""

import logging
import re
import time

import pytest
from channels.layers import get_channel_layer

from apps.accounts.sockets import user_group
from apps.conversations.models import ChatSession
from apps.realtime.protocol import MAX_JSON_DEPTH, ErrorCode
from tests.realtime.client import connected_socket, dumps, open_socket, send_raw

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]


async def assert_usable(comm):
    assert await send_raw(comm, dumps({"type": "ping"})) == {"type": "pong"}


def _nested(depth: int) -> str:
    return '{"type": "ping", "x": ' + "[" * depth + "]" * depth + "}"


@pytest.mark.parametrize(
    "raw, code",
    [
        ("[" * 200_000, "invalid_json"),  # json.loads would recurse until RecursionError (was a 1011 close)
        ("{" * 200_000, "invalid_json"),
        ('{"type": "ping", "x": ' + "[" * 200_000, "invalid_json"),
        (_nested(MAX_JSON_DEPTH + 1), "invalid_json"),
        ('"' + "\\" * 150_000 + "[" * 100, "invalid_json"),  # an unterminated string of escapes, then brackets
        ('"\\"' * 50_000 + "[" * 40, "invalid_json"),
        ('{"type": "ping", "x": NaN}', "invalid_json"),
        ('{"type": "ping", "x": -Infinity}', "invalid_json"),
        ('{"type": "ping", "x": 1e999}', "invalid_json"),
        ('{"type": "ping", "x": ' + "9" * 5000 + "}", "invalid_json"),  # over Python's int digit limit
        ('{"type": "message", "content": "a\\u0000b"}', "invalid_field"),  # PostgreSQL refuses NUL
        ('{"type": "message", "content": "\\ud800"}', "invalid_field"),  # an unpaired surrogate
        ('{"type": "switch_character", "character_name": "\\udfff"}', "invalid_field"),
        ('{"type": "memory_delete", "memory_id": "x\\u0000"}', "invalid_field"),
        ('{"type": "ping", "\\ud800": 1}', "invalid_field"),
        ("\ud800", "invalid_json"),  # not UTF-8 text at all
        ('{"type": "message", "content": "' + "[" * 5000 + '"}', "message_too_long"),  # brackets in a string
        ('{"type": "memories_list", "limit": 1e300}', "invalid_field"),
        ('{"type": "memories_list", "limit": [1]}', "invalid_field"),
        ('{"type": "connect", "character_name": "nova", "output_sample_rate": 99999999999999999999}', "invalid_field"),
        ('{"type": "audio_stream_end"}', "no_stream"),
        ('{"type": "audio_stream_chunk", "audio_base64": "AAAAAA=="}', "no_stream"),
        ('{"type": "voice_call_stop"}', "no_call"),
        ('{"type": "memory_delete", "memory_id": "../../etc"}', "invalid_memory_id"),
        ('{"type": "memory_delete", "memory_id": "00000000-0000-0000-0000-000000000000"}', "memory_not_found"),
        ('{"type": "switch_character", "character_name": ""}', "unknown_character"),
        ('{"type": "ping", "type": "dance"}', "unknown_type"),  # duplicate keys: the last one counts
        ('{"type": ["ping"]}', "invalid_frame"),
        ("null", "invalid_frame"),
        (" ", "invalid_json"),
    ],
)
async def test_hostile_frame_gets_a_documented_code_and_socket_stays_usable(raw, code, api_key, character, caplog):
    comm = await connected_socket(api_key)
    started = time.monotonic()
    frame = await send_raw(comm, raw)
    elapsed = time.monotonic() - started
    assert frame["type"] == "error", frame
    assert frame["code"] == code, frame
    assert code in ErrorCode.DESCRIPTIONS
    assert elapsed < 1.0, elapsed  # (measured, not a bound from the issue: no frame may stall the socket)
    await assert_usable(comm)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_nesting_up_to_the_limit_is_fine(api_key, character):
    comm = await connected_socket(api_key)
    assert await send_raw(comm, _nested(MAX_JSON_DEPTH - 1)) == {"type": "pong"}


async def test_binary_and_stream_frames_in_every_order(api_key, character):
    comm = await open_socket()
    await comm.send_to(bytes_data=b"\x00\x01\x02")  # before connect
    assert (await comm.receive_json_from())["code"] == "not_connected"
    comm = await connected_socket(api_key)
    await comm.send_to(bytes_data=b"\x00")  # odd length, outside a stream
    assert (await comm.receive_json_from())["code"] in {"binary_not_expected", "invalid_audio"}
    for raw, answer in [
        ({"type": "voice_call_start"}, "voice_call_listening"),
        ({"type": "voice_call_stop"}, None),
        ({"type": "voice_call_stop"}, "no_call"),
        ({"type": "audio_stream_start"}, "audio_stream_started"),
        ({"type": "audio_stream_start"}, "audio_stream_started"),  # a restart drops the first stream
        ({"type": "audio_stream_end"}, "empty_audio"),
        ({"type": "audio_stream_end"}, "no_stream"),
    ]:
        await comm.send_json_to(raw)
        if answer is None:
            assert await comm.receive_nothing(timeout=0.2)
            continue
        frame = await comm.receive_json_from()
        assert answer in (frame["type"], frame.get("code")), (raw, frame)
    await comm.send_to(bytes_data=b"\x00")
    assert (await comm.receive_json_from())["code"] in {"binary_not_expected", "invalid_audio"}
    await assert_usable(comm)


async def test_a_failing_handler_is_an_internal_error_with_a_logged_reference(api_key, character, caplog):
    """Staff deleted the conversation while its user was talking: the next message cannot be saved."""
    comm = await connected_socket(api_key)
    await ChatSession.objects.all().adelete()
    with caplog.at_level(logging.ERROR, logger="apps.realtime.consumers"):
        frame = await send_raw(comm, dumps({"type": "message", "content": "still there?"}))
    assert frame["type"] == "error" and frame["code"] == "internal_error", frame
    (ref,) = re.findall(r"reference ([0-9a-f]{12})", frame["message"])
    (record,) = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert ref in record.getMessage() and "frame message" in record.getMessage()
    assert record.exc_info is not None  # the traceback is in the log, not in the frame
    await assert_usable(comm)
    assert (await send_raw(comm, dumps({"type": "clear_history"})))["type"] == "history_cleared"


async def test_a_malformed_worker_event_does_not_close_the_socket(user, api_key, character, caplog):
    """An event the consumer cannot handle (a worker of another version) is an internal error, not 1011."""
    comm = await connected_socket(api_key)
    layer = get_channel_layer()
    with caplog.at_level(logging.ERROR, logger="apps.realtime.consumers"):
        await layer.group_send(user_group(user.pk), {"type": "memory.results", "items": "not a list"})
        frame = await comm.receive_json_from(timeout=5)
    assert frame["code"] == "internal_error"
    assert "event memory.results" in caplog.records[-1].getMessage()
    await assert_usable(comm)
