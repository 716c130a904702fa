"""Property: nothing a client sends hurts the socket (hypothesis drives the real app in-process).

Random JSON, valid frames mutated (fields dropped, retyped, resized, re-encoded, sent as binary,
truncated, keys duplicated) and binary frames, before and after `connect`, in any order. After
each example the socket must still answer `ping` with `pong`, every `error` must carry a
documented code, nothing may close the socket, and the server must log nothing at ERROR.
"""

import base64
import json
import logging

import pytest
import redis
from django.conf import settings as django_settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apps.realtime import protocol as p
from tests.realtime.client import connect
from tests.realtime.client import open_socket as _open_socket

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]

SERVER_TYPES = {cls.model_fields["type"].default for cls in p.SERVER_FRAMES}
PCM = base64.b64encode(b"\x00\x01" * 800).decode()  # 50 ms of near silence, valid 16 kHz s16le

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()  # NaN and ±Infinity serialise as literals JSON does not have
    | st.text(max_size=40)
    | st.sampled_from(["", " ", "nova", "\x00", "\ud800", "😀" * 3, "x" * 5000, PCM, "not base64!"])
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)

VALID = [
    {"type": "message", "content": "Hello there!"},
    {"type": "switch_character", "character_name": "nova"},
    {"type": "clear_history"},
    {"type": "ping"},
    {"type": "audio_message", "audio_base64": PCM},
    {"type": "audio_stream_start"},
    {"type": "audio_stream_chunk", "audio_base64": PCM},
    {"type": "audio_stream_end"},
    {"type": "voice_call_start"},
    {"type": "voice_call_audio_chunk", "audio_base64": PCM},
    {"type": "agent_audio_chunk", "audio_base64": PCM},
    {"type": "voice_call_stop"},
    {"type": "agent_mode_stop"},
    {"type": "memories_list", "limit": 5},
    {"type": "memory_delete", "memory_id": "00000000-0000-0000-0000-000000000000"},
    {"type": "connect", "character_name": "nova", "text_deltas": True, "output_sample_rate": 22050},
]
TYPES = sorted(p.CLIENT_FRAMES) + ["", "Ping", "pong", "error", "__class__", "turn.frames", "websocket.close"]


@st.composite
def mutated(draw) -> tuple[str, object]:
    """A valid frame with up to two things wrong with it, as ("text", str) or ("bytes", bytes)."""
    frame = dict(draw(st.sampled_from(VALID)))
    for _ in range(draw(st.integers(0, 2))):
        how = draw(st.sampled_from(["drop", "retype", "extra", "type", "same"]))
        keys = sorted(frame)
        if how == "drop" and keys:
            frame.pop(draw(st.sampled_from(keys)))
        elif how == "retype" and keys:
            frame[draw(st.sampled_from(keys))] = draw(json_values)
        elif how == "extra":
            frame[draw(st.text(max_size=12))] = draw(json_values)
        elif how == "type":
            frame["type"] = draw(st.sampled_from(TYPES))
    text = json.dumps(frame)
    encoding = draw(st.sampled_from(["plain", "plain", "binary", "truncate", "insert", "dup_key", "wrap", "pad"]))
    if encoding == "binary":
        return "bytes", text.encode()
    if encoding == "truncate":
        return "text", text[: draw(st.integers(0, max(0, len(text) - 1)))] or " "
    if encoding == "insert":
        at = draw(st.integers(0, len(text)))
        return "text", text[:at] + draw(st.text(min_size=1, max_size=3)) + text[at:]
    if encoding == "dup_key":
        return "text", text[:-1] + (", " if len(frame) else "") + '"type": ' + json.dumps(
            draw(st.sampled_from(TYPES))
        ) + "}"
    if encoding == "wrap":
        return "text", draw(st.sampled_from(["[{}]", "[[{}]]", '{{"frame": {}}}'])).format(text)
    if encoding == "pad":
        return "text", " " * draw(st.integers(0, 1000)) + text + "\n" * draw(st.integers(0, 3))
    return "text", text


frames = st.one_of(
    st.builds(lambda f: ("text", json.dumps(f)), st.sampled_from(VALID)),
    mutated(),
    mutated(),
    st.builds(lambda v: ("text", json.dumps(v)), json_values),
    st.builds(lambda s: ("text", s), st.text(min_size=1, max_size=60)),
    st.builds(lambda n: ("text", "[" * n), st.sampled_from([33, 1000, 200_000])),
    st.builds(lambda b: ("bytes", b), st.binary(min_size=1, max_size=3200)),
)
not_connect = frames.filter(lambda f: f[0] == "bytes" or '"connect"' not in f[1])


async def _receive(comm) -> dict:
    output = await comm.receive_output(timeout=10)
    assert output["type"] == "websocket.send", f"the server closed the socket: {output}"
    return json.loads(output["text"])


def _check(frame: dict) -> None:
    assert frame["type"] in SERVER_TYPES, frame
    if frame["type"] == "error":
        assert frame["code"] in p.ErrorCode.DESCRIPTIONS, frame
    assert frame["type"] != "disconnected", frame


@pytest.fixture
def _no_stray_speech_jobs():
    """Voice turns of the fuzz queue ASR jobs no worker here takes: drop them with the test."""
    yield
    redis.Redis.from_url(django_settings.CELERY_BROKER_URL).delete("asr", "asr_partial", "tts")


@settings(
    max_examples=200,
    deadline=None,
    derandomize=True,  # the same examples on every run: CI is stable, a failure reproduces
    database=None,
    # The fixtures (user, token, character, workers) are shared on purpose; each example opens its own socket.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(before=st.lists(not_connect, max_size=3), after=st.lists(frames, min_size=1, max_size=8))
async def test_no_frame_sequence_hurts_the_socket(
    before, after, api_key, character, llm_worker, caplog, _no_stray_speech_jobs
):
    caplog.clear()
    comm = await _open_socket()
    try:
        sent = []
        for kind, data in before:  # each is refused with one `error` (not connected, or bad on its own)
            sent.append((kind, data[:200]))
            await comm.send_to(**({"text_data": data} if kind == "text" else {"bytes_data": data}))
            frame = await _receive(comm)
            _check(frame)
            assert frame["type"] == "error", frame
        reply = await connect(comm, api_key=api_key)
        _check(reply)
        assert reply["type"] == "connected", reply
        for kind, data in after:
            sent.append((kind, data[:200]))
            await comm.send_to(**({"text_data": data} if kind == "text" else {"bytes_data": data}))
        await comm.send_to(text_data='{"type": "ping"}')
        while True:  # answers, turn frames, then our pong
            frame = await _receive(comm)
            _check(frame)
            if frame == {"type": "pong"}:
                break
    finally:
        await comm.disconnect(timeout=5)
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, (errors, sent)
