"""OpenAIEngine against a real OpenAI-compatible HTTP server serving the scripted engine."""

import json
import threading

import httpx
import pytest

from tests.workers.openai_server import serve
from workers.llm.engines import EngineError, OpenAIEngine, ScriptedEngine

CHAT = [
    {"role": "system", "content": "You are Nova, a cheerful astronomy guide."},
    {"role": "user", "content": "hello there"},
]
SCRIPTED = "[happy] You said: hello there. I am Nova. Anything else?"


class CountingEngine:
    """Wraps an engine: records the pieces it yielded and whether it was told to stop."""

    def __init__(self, engine):
        self.engine, self.name = engine, engine.name
        self.yielded, self.max_new_tokens = [], []
        self.stopped, self.done = threading.Event(), threading.Event()

    def count_tokens(self, text):
        return self.engine.count_tokens(text)

    def stream(self, messages, *, should_stop=lambda: False, max_new_tokens=None):
        self.max_new_tokens.append(max_new_tokens)

        def stop():
            if should_stop():
                self.stopped.set()
                return True
            return False

        try:
            for piece in self.engine.stream(messages, should_stop=stop, max_new_tokens=max_new_tokens):
                self.yielded.append(piece)
                yield piece
        finally:
            self.done.set()


@pytest.fixture
def server():
    engine = CountingEngine(ScriptedEngine())
    url, stop = serve(engine, api_key="sk-test")
    yield url, engine, stop
    stop()


def test_streamed_deltas_add_up_to_the_reply(server):
    url, engine, _ = server
    client = OpenAIEngine(base_url=url, api_key="sk-test", max_new_tokens=77)
    deltas = list(client.stream(CHAT))
    assert len(deltas) > 1
    assert "".join(deltas) == SCRIPTED
    assert engine.max_new_tokens == [77]
    assert list(client.stream(CHAT, max_new_tokens=5)) and engine.max_new_tokens[-1] == 5


def test_wrong_api_key_is_an_engine_error(server):
    url, engine, _ = server
    with pytest.raises(EngineError, match="401"):
        list(OpenAIEngine(base_url=url, api_key="sk-wrong").stream(CHAT))
    with pytest.raises(EngineError, match="401"):
        list(OpenAIEngine(base_url=url).stream(CHAT))
    assert engine.max_new_tokens == []  # never reached the model


def test_stopped_server_is_an_engine_error(server):
    url, _, stop = server
    stop()
    with pytest.raises(EngineError, match="cannot stream"):
        list(OpenAIEngine(base_url=url, api_key="sk-test", timeout=5).stream(CHAT))


def test_engine_failure_mid_stream_is_an_engine_error(server):
    url, _, _ = server
    client = OpenAIEngine(base_url=url, api_key="sk-test")
    seen = []
    with pytest.raises(EngineError, match="scripted failure"):
        for delta in client.stream([{"role": "user", "content": "please explode"}]):
            seen.append(delta)
    assert seen == ["[happy] "]


def test_should_stop_hangs_up_and_the_server_stops_its_engine(server):
    url, engine, _ = server
    client = OpenAIEngine(base_url=url, api_key="sk-test")
    slow = [CHAT[0], {"role": "user", "content": "tell it slowly please"}]  # 200 ms a piece
    total = len("[happy] You said: tell it slowly please. I am Nova. Anything else?".split())  # pieces of the reply
    seen = []
    for delta in client.stream(slow, should_stop=lambda: len(seen) >= 1):
        seen.append(delta)
    assert seen == ["[happy] "]
    assert len(engine.yielded) <= 3 < total  # returned at once: it did not wait for the rest
    assert engine.stopped.wait(2), "the server did not notice the client hung up"
    assert engine.done.wait(2)
    assert len(engine.yielded) < total


def test_wire_format(server):
    url, _, _ = server
    headers = {"Authorization": "Bearer sk-test"}
    body = {"model": "nova-1", "messages": CHAT, "stream": True}
    with httpx.stream("POST", f"{url}/chat/completions", json=body, headers=headers) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(line.removeprefix("data: ")) for line in lines[:-1]]
    assert all(c["object"] == "chat.completion.chunk" and c["id"].startswith("chatcmpl-") for c in chunks)
    assert all(c["model"] == "nova-1" and isinstance(c["created"], int) for c in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant"}
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == SCRIPTED

    plain = httpx.post(f"{url}/chat/completions", json={**body, "stream": False}, headers=headers)
    assert plain.status_code == 200
    completion = plain.json()
    assert completion["object"] == "chat.completion"
    assert completion["choices"][0]["message"] == {"role": "assistant", "content": SCRIPTED}
    assert completion["choices"][0]["finish_reason"] == "stop"

    assert httpx.get(f"{url}/models", headers=headers).json()["data"][0]["id"] == "scripted"
    bad = httpx.post(f"{url}/chat/completions", content=b"{not json", headers=headers)
    assert bad.status_code == 400 and "error" in bad.json()
    assert httpx.get(f"{url}/models").status_code == 401
