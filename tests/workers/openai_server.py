"""A small real HTTP server speaking OpenAI chat completions, serving any ChatEngine.

Lets tests drive `OpenAIEngine` over a real socket: streaming (SSE) and plain completions,
`GET /v1/models`, bearer-key checks, and a client that hangs up mid-stream stops the engine.
`FixedRateEngine` makes it a server that streams at a fixed token rate, as a serving engine with
room to spare does for each of its streams (one thread per connection: streams do not slow each
other); run as a program it serves one, for benchmarks:

    python tests/workers/openai_server.py --port 8011 --tokens-per-s 30 --first-token-ms 100
"""

import argparse
import json
import select
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FixedRateEngine:
    """`engine`'s reply, each piece sent on a fixed schedule: the first `first_token_s` after the
    request, then one every 1/`tokens_per_s` s (an engine slower than that, e.g. the scripted engine's
    "dawdle", keeps its own pace). Checks `should_stop` while it waits, so a client hanging up ends it."""

    def __init__(self, engine, *, tokens_per_s: float, first_token_s: float):
        self.engine, self.tokens_per_s, self.first_token_s = engine, tokens_per_s, first_token_s
        self.name = f"fixed-rate-{tokens_per_s:g}-tok-s"

    def count_tokens(self, text: str) -> int:
        return self.engine.count_tokens(text)

    def stream(self, messages, *, should_stop=lambda: False, max_new_tokens=None, **kwargs) -> Iterator[str]:
        start = time.monotonic()
        pieces = self.engine.stream(messages, should_stop=should_stop, max_new_tokens=max_new_tokens)
        for i, piece in enumerate(pieces):
            due = start + self.first_token_s + i / self.tokens_per_s
            while (wait := due - time.monotonic()) > 0:
                if should_stop():
                    return
                time.sleep(min(wait, 0.05))
            yield piece


# Short plain words: numbered ones ("w13") were spoken as "double-you thirteen", a voice turn's reply
# two to three times the audio of as many real words, and that load fell on the TTS worker.
_PLAIN = "we all went down to the old park and saw a big red kite fly high then it fell in the cold lake".split()


class WordsEngine:
    """A reply of `max_new_tokens` (else `words`) short plain words, one piece each, in sentences of
    eight: for load, where how much the server streams matters and not what it says."""

    name = "words"

    def __init__(self, *, words: int = 64):
        self.words = words

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def stream(self, messages, *, should_stop=lambda: False, max_new_tokens=None, **kwargs) -> Iterator[str]:
        for i in range(max_new_tokens or self.words):
            if should_stop():
                return
            word = _PLAIN[i % len(_PLAIN)]
            yield f"{word}. " if i % 8 == 7 else f"{word} "


def serve(engine, *, api_key: str = "", port: int = 0) -> tuple[str, Callable[[], None]]:
    """Serve `engine` on 127.0.0.1 (`port`, else a free one); returns the base URL (".../v1") and a stop function."""

    class Handler(_Handler):
        pass

    Handler.engine, Handler.api_key = engine, api_key
    server = _Server(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    return f"http://127.0.0.1:{server.server_address[1]}/v1", stop


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # many streams may connect at once (socketserver's backlog is 5)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    engine = None
    api_key = ""

    def log_message(self, format, *args) -> None:  # keep test output quiet
        pass

    # --- routes -----------------------------------------------------------------------------

    def do_GET(self) -> None:
        if not self._authorized():
            return
        if self.path.rstrip("/") != "/v1/models":
            return self._error(404, "not_found", f"No route {self.path}")
        model = getattr(self.engine, "name", "engine")
        self._json(200, {"object": "list", "data": [{"id": model, "object": "model", "owned_by": "tests"}]})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if not self._authorized():
            return
        if self.path.rstrip("/") != "/v1/chat/completions":
            return self._error(404, "not_found", f"No route {self.path}")
        try:
            request = json.loads(body)
        except ValueError:
            return self._error(400, "invalid_json", "The request body is not valid JSON.")
        messages = request.get("messages") if isinstance(request, dict) else None
        if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
            return self._error(400, "invalid_request", "`messages` must be a list of objects.")
        max_tokens = request.get("max_tokens")
        model = request.get("model") or getattr(self.engine, "name", "engine")
        if request.get("stream"):
            self._stream(messages, model, max_tokens)
        else:
            self._complete(messages, model, max_tokens)

    # --- responses --------------------------------------------------------------------------

    def _complete(self, messages: list, model: str, max_tokens: int | None) -> None:
        try:
            text = "".join(self.engine.stream(messages, max_new_tokens=max_tokens))
        except Exception as exc:  # noqa: BLE001 - any engine failure is the server's 500
            return self._error(500, "engine_error", str(exc))
        prompt_tokens = sum(self.engine.count_tokens(m.get("content") or "") for m in messages)
        completion_tokens = self.engine.count_tokens(text)
        self._json(
            200,
            {
                "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                },
            },
        )

    def _stream(self, messages: list, model: str, max_tokens: int | None) -> None:
        self.close_connection = True
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")  # close-delimited body
        self.end_headers()
        base = {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
        }
        gone = False

        def hung_up() -> bool:
            nonlocal gone
            gone = gone or _peer_closed(self.connection)
            return gone

        try:
            self._event({**base, "choices": [{"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}]})
            for piece in self.engine.stream(messages, should_stop=hung_up, max_new_tokens=max_tokens):
                self._event({**base, "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]})
            if hung_up():
                return
            self._event({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
            self._send(b"data: [DONE]\n\n")
        except OSError:  # the client hung up between our checks
            return
        except Exception as exc:  # noqa: BLE001 - reported in-stream, as OpenAI-compatible servers do
            try:
                self._event({"error": {"message": str(exc), "type": "engine_error"}})
            except OSError:
                pass

    def _event(self, payload: dict) -> None:
        self._send(b"data: " + json.dumps(payload).encode() + b"\n\n")

    def _send(self, data: bytes) -> None:
        self.wfile.write(data)
        self.wfile.flush()

    def _authorized(self) -> bool:
        if not self.api_key or self.headers.get("Authorization", "") == f"Bearer {self.api_key}":
            return True
        self._error(401, "invalid_api_key", "Incorrect API key provided.")
        return False

    def _error(self, status: int, code: str, message: str) -> None:
        self._json(status, {"error": {"message": message, "type": "invalid_request_error", "code": code}})

    def _json(self, status: int, payload: dict) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _peer_closed(sock: socket.socket) -> bool:
    """True once the client has closed its end (readable with nothing to read)."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        return bool(readable) and sock.recv(1, socket.MSG_PEEK) == b""
    except (OSError, ValueError):
        return True


def main() -> None:
    parser = argparse.ArgumentParser(
        description="An OpenAI-compatible server streaming short plain words at a fixed rate."
    )
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--tokens-per-s", type=float, default=30.0)
    parser.add_argument("--first-token-ms", type=float, default=100.0)
    parser.add_argument("--words", type=int, default=64, help="reply length when a request sets no max_tokens")
    args = parser.parse_args()
    engine = FixedRateEngine(
        WordsEngine(words=args.words), tokens_per_s=args.tokens_per_s, first_token_s=args.first_token_ms / 1000
    )
    url, _ = serve(engine, port=args.port)
    print(f"serving {engine.name} at {url}", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
