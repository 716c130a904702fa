"""Server-Sent Events (`text/event-stream`) from an async iterator, streamed as it is written."""

import json
from collections.abc import AsyncIterator

from django.http import StreamingHttpResponse


def sse_event(data, *, event: str | None = None) -> bytes:
    """One event: `event:` (when named) and `data:` (JSON, or a string as it is), then a blank line."""
    text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {text}\n\n".encode()


def sse_event_schema(events: list[str] | None = None) -> dict:
    """The OpenAPI schema of one event of such a stream (before OpenAPI 3.2 a `text/event-stream`
    schema describes each event): its `event` name, one of `events` (none: unnamed), and its `data`."""
    event = {"type": "string", "enum": events} if events else {"type": "string"}
    data = {"type": "string", "description": "JSON (or the literal `[DONE]`)."}
    return {"type": "object", "properties": {"event": event, "data": data}, "required": ["data"]}


SSE_KEEPALIVE = b": keep-alive\n\n"  # a comment line: clients ignore it, proxies see traffic


def sse_response(events: AsyncIterator[bytes], *, headers: dict | None = None) -> StreamingHttpResponse:
    """A streaming response of already encoded events; proxies are asked not to buffer it."""
    response = StreamingHttpResponse(events, content_type="text/event-stream; charset=utf-8")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # nginx: pass each event on at once
    for name, value in (headers or {}).items():
        response[name] = value
    return response
