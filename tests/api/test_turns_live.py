"""HTTP turns through a live Daphne (the scaled stack, a real Celery LLM worker with the scripted
engine): the SSE stream arrives as the reply is written, and a client that goes away stops the turn,
its reply saved as far as it was sent, marked interrupted, as the socket does."""

import json
import time

import httpx
import pytest

from apps.conversations.models import Message
from apps.conversations.services import session_create

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("llm_worker")]


@pytest.fixture
def session(user, character):
    return session_create(user=user, character=character)


def sse(lines):
    """(event, data, arrival time) for each event of an SSE stream read line by line."""
    event, data = "message", None
    for line in lines:
        if line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: "):
            data = json.loads(line[6:])
        elif not line and data is not None:
            yield event, data, time.monotonic()
            event, data = "message", None


def reply_settled(*, session, timeout: float = 10.0) -> Message:
    """The session's reply once its job has let go of it (a stopped job notes how long stopping took)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        reply = Message.objects.filter(session=session, role="assistant").order_by("-created_at").first()
        if reply is not None and {"llm_ms", "llm_stop_ms"} & set(reply.timings):
            return reply
        time.sleep(0.05)
    raise AssertionError("the reply was never settled")


def test_the_stream_arrives_while_the_reply_is_written(daphne_url, api_key, session):
    url = f"{daphne_url}/api/v1/sessions/{session.pk}/turns"
    headers = {"Authorization": f"Bearer {api_key}"}
    with httpx.stream(
        "POST", url, json={"content": "tell it slowly", "stream": True}, headers=headers, timeout=30
    ) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = list(sse(r.iter_lines()))
    kinds = [kind for kind, _, _ in events]
    assert kinds[-1] == "message" and set(kinds[:-1]) == {"delta"}, kinds
    # ~12 words at 200 ms each: the first piece came seconds before the end, not all at once
    assert events[-1][2] - events[0][2] > 1.0, [round(at - events[0][2], 2) for _, _, at in events]
    saved = events[-1][1]["message"]
    assert "".join(data["text"] for _, data, _ in events[:-1]) == saved["content"]
    assert Message.objects.get(pk=saved["id"]).status == "complete"


def test_a_streaming_client_that_leaves_stops_the_turn(daphne_url, api_key, session):
    url = f"{daphne_url}/api/v1/sessions/{session.pk}/turns"
    headers = {"Authorization": f"Bearer {api_key}"}
    got = []
    with httpx.stream(
        "POST", url, json={"content": "tell it slowly", "stream": True}, headers=headers, timeout=30
    ) as r:
        for kind, data, _ in sse(r.iter_lines()):
            assert kind == "delta"
            got.append(data["text"])
            if len(got) == 2:
                break  # and the connection closes
    reply = reply_settled(session=session)
    assert reply.status == "interrupted"
    assert reply.content == "".join(got).strip()  # as far as it was sent (a piece may be in flight)
    assert "Anything else?" not in reply.content and "llm_stop_ms" in reply.timings  # the job stopped early
    again = httpx.post(url, json={"content": "hello again"}, headers=headers, timeout=30)
    assert again.status_code == 200  # the session was let go


def test_a_waiting_client_that_leaves_stops_the_turn(daphne_url, api_key, session):
    url = f"{daphne_url}/api/v1/sessions/{session.pk}/turns"
    headers = {"Authorization": f"Bearer {api_key}"}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(url, json={"content": "tell it slowly"}, headers=headers, timeout=httpx.Timeout(30, read=1.0))
    reply = reply_settled(session=session)
    assert reply.status == "interrupted" and reply.content == ""  # a one-shot client had been sent nothing
    assert "llm_stop_ms" in reply.timings and reply.timings.get("client_left") is True
    assert httpx.post(url, json={"content": "hello again"}, headers=headers, timeout=30).status_code == 200
