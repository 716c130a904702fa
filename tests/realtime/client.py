"""Drive the /ws consumer in-process, as a client would."""

import json

from channels.testing import WebsocketCommunicator

from personatalk.asgi import application

OPEN: list[WebsocketCommunicator] = []  # closed after each test by tests/realtime/conftest.py


async def open_socket(headers=None) -> WebsocketCommunicator:
    comm = WebsocketCommunicator(application, "/ws", headers=headers or [])
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
