"""Drive the /ws consumer in-process, as a client would; every frame received is checked against the protocol."""

import json

from channels.testing import WebsocketCommunicator

from apps.realtime import protocol as p
from personatalk.asgi import application


def server_frame_check(frame) -> dict:
    """Fail the test unless `frame` is exactly a server frame of apps/realtime/protocol.py (known type, no unknown
    field, fields of the right types)."""
    assert isinstance(frame, dict), f"a server frame is a JSON object, got {frame!r}"
    schema = p.SERVER_FRAME_TYPES.get(frame.get("type"))
    assert schema is not None, f"the server sent an unknown frame type: {frame!r}"
    schema.model_validate(frame)  # raises on a missing, mistyped or unknown field
    return frame


class CheckedCommunicator(WebsocketCommunicator):
    """A test socket whose every received text frame is validated against SERVER_FRAMES."""

    async def receive_from(self, timeout=1):
        data = await super().receive_from(timeout)
        if isinstance(data, str):
            server_frame_check(json.loads(data))
        return data


OPEN: list[WebsocketCommunicator] = []  # closed after each test by tests/realtime/conftest.py


async def open_socket(headers=None) -> WebsocketCommunicator:
    comm = CheckedCommunicator(application, "/ws", headers=headers or [])
    connected, _ = await comm.connect()
    assert connected
    OPEN.append(comm)
    return comm


async def close_all() -> None:
    """Disconnect every socket a test opened, so no consumer outlives its test's event loop."""
    while OPEN:
        comm = OPEN.pop()
        try:
            await comm.disconnect(timeout=2)
        except BaseException:  # already closed by the server, or the app ended with an error
            pass


async def connect(comm, *, api_key=None, character="nova", **extra) -> dict:
    frame = {"type": "connect", "character_name": character, **extra}
    if api_key:
        frame["api_token"] = api_key
    await comm.send_json_to(frame)
    return await comm.receive_json_from(timeout=5)


async def connected_socket(api_key, character="nova", **extra) -> WebsocketCommunicator:
    comm = await open_socket()
    reply = await connect(comm, api_key=api_key, character=character, **extra)
    assert reply["type"] == "connected", reply
    return comm


async def send_raw(comm, text: str) -> dict:
    await comm.send_to(text_data=text)
    return await comm.receive_json_from(timeout=5)


async def until_turn_end(comm, timeout: float = 30) -> list[dict]:
    """Every frame up to and including `turn_end`."""
    frames = []
    while True:
        frame = await comm.receive_json_from(timeout=timeout)
        frames.append(frame)
        if frame["type"] == "turn_end":
            return frames


def types(frames) -> list[str]:
    return [f["type"] for f in frames]


def dumps(obj) -> str:
    return json.dumps(obj)
