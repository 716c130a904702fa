"""POST /api/v1/sessions/<id>/turns in-process (Django's async client), with the Redis channel layer and
a real Celery LLM worker (scripted engine): the one-shot JSON reply, the SSE stream, and the socket's
limits and quotas, answered as HTTP errors with stable codes."""

import asyncio
import json

import pytest
from asgiref.sync import sync_to_async
from django.test import AsyncClient

from apps.accounts.services import token_create
from apps.conversations.models import ChatSession, Message
from apps.conversations.services import session_create

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio, pytest.mark.usefixtures("llm_worker")]

REPLY = "You said: {}. I am Nova. Anything else?"


@pytest.fixture
async def session(user, character) -> ChatSession:
    return await sync_to_async(session_create)(user=user, character=character)


def bearer(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


async def post_turn(session_id, key: str, **body):
    return await AsyncClient().post(
        f"/api/v1/sessions/{session_id}/turns", body, content_type="application/json", headers=bearer(key)
    )


async def read_events(response) -> list[tuple[str, dict]]:
    """The SSE body as (event, data) pairs (comment lines left out)."""
    text = b"".join([chunk async for chunk in response.streaming_content]).decode()
    events = []
    for block in text.split("\n\n"):
        lines = [line for line in block.splitlines() if line and not line.startswith(":")]
        if lines:
            fields = dict(line.split(": ", 1) for line in lines)
            events.append((fields.get("event", "message"), json.loads(fields["data"])))
    return events


async def rows(session_id) -> list[tuple[str, str, str]]:
    return [
        (m.role, m.content, m.status)
        async for m in Message.objects.filter(session_id=session_id).order_by("created_at")
    ]


async def test_a_one_shot_turn_saves_both_messages_and_answers_the_reply(api_key, session):
    response = await post_turn(session.pk, api_key, content="  I love the stars ")
    assert response.status_code == 200, response.content
    message = response.json()["message"]
    assert set(message) == set("id role content emotion status timings memories_used lore_used created_at".split())
    assert (message["role"], message["content"], message["emotion"], message["status"]) == (
        "assistant",
        REPLY.format("I love the stars"),
        "happy",
        "complete",
    )
    assert {"queue_ms", "first_token_ms", "llm_ms"} <= set(message["timings"])
    assert await rows(session.pk) == [
        ("assistant", "Hi! I'm Nova.", "complete"),
        ("user", "I love the stars", "complete"),
        ("assistant", REPLY.format("I love the stars"), "complete"),
    ]
    assert (
        str((await Message.objects.aget(role="assistant", status="complete", timings__has_key="llm_ms")).pk)
        == (message["id"])
    )


async def test_a_streamed_turn_sends_deltas_that_add_up_to_the_saved_reply(api_key, session):
    response = await post_turn(session.pk, api_key, content="tell me about Mars", stream=True)
    assert response.status_code == 200 and response["Content-Type"].startswith("text/event-stream")
    assert response["Cache-Control"] == "no-cache"
    events = await read_events(response)
    kinds = [kind for kind, _ in events]
    assert kinds[-1] == "message" and set(kinds[:-1]) == {"delta"}, kinds
    assert len(kinds) > 2  # the reply came in pieces
    saved = events[-1][1]["message"]
    assert "".join(data["text"] for _, data in events[:-1]) == saved["content"]
    assert saved["content"] == REPLY.format("tell me about Mars") and saved["status"] == "complete"
    assert (await Message.objects.aget(pk=saved["id"])).content == saved["content"]


async def test_a_failing_model_is_a_502_or_an_error_event_and_the_reply_saved_as_failed(api_key, session):
    response = await post_turn(session.pk, api_key, content="please explode")
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "llm_failed"
    streamed = await read_events(await post_turn(session.pk, api_key, content="explode again", stream=True))
    assert streamed[-1][0] == "error" and streamed[-1][1]["error"]["code"] == "llm_failed"
    assert [s for r, _, s in await rows(session.pk) if r == "assistant"][1:] == ["failed", "failed"]


async def test_only_the_callers_live_sessions(api_key, session, django_user_model, character):
    bob = await django_user_model.objects.acreate(username="bob")
    bobs_key = (await sync_to_async(token_create)(user=bob, name="t")).key
    for session_id, key in (
        (session.pk, bobs_key),  # someone else's
        ("not-a-uuid", api_key),
        ("5d8f8a56-0b3c-4c1e-9d61-2b8a8f0e6a10", api_key),
    ):
        response = await post_turn(session_id, key, content="hello")
        assert response.status_code == 404, session_id
        assert response.json() == {"error": {"code": "unknown_session", "message": "You have no session with that id."}}
    await ChatSession.objects.filter(pk=session.pk).aupdate(deleted_at="2026-01-01T00:00Z")
    assert (await post_turn(session.pk, api_key, content="hello")).status_code == 404
    assert await Message.objects.filter(role="user").acount() == 0


async def test_authentication_is_required(session):
    anonymous = await AsyncClient().post(
        f"/api/v1/sessions/{session.pk}/turns", {"content": "hi"}, content_type="application/json"
    )
    assert anonymous.status_code == 401 and anonymous.json()["error"]["code"] == "auth_failed"
    wrong = await post_turn(session.pk, "pt_not-a-key", content="hi")
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "auth_failed"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"content": "   "}, "empty_message"),
        ({"content": "x" * 4001}, "message_too_long"),
        ({}, "missing_field"),
        ({"content": 3, "stream": "maybe"}, "invalid_field"),
        ({"content": "nul \x00 here"}, "invalid_field"),
    ],
)
async def test_a_bad_line_is_a_400_with_the_sockets_codes(api_key, session, body, code):
    response = await post_turn(session.pk, api_key, **body)
    assert response.status_code == 400 and response.json()["error"]["code"] == code, response.content
    assert await Message.objects.filter(role="user").acount() == 0


async def test_bad_json_is_a_400(api_key, session):
    response = await AsyncClient().post(
        f"/api/v1/sessions/{session.pk}/turns", "{nope", content_type="application/json", headers=bearer(api_key)
    )
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_json"


async def test_the_turns_quota_is_a_429_with_retry_after(api_key, session, settings):
    settings.QUOTA_TURNS, settings.QUOTA_WINDOW_S = 1, 5.0
    assert (await post_turn(session.pk, api_key, content="first")).status_code == 200
    refused = await post_turn(session.pk, api_key, content="second")
    assert refused.status_code == 429
    error = refused.json()["error"]
    assert error["code"] == "rate_limited" and 0 < error["retry_after"] <= 5.0
    assert 1 <= int(refused["Retry-After"]) <= 5
    assert [c for r, c, _ in await rows(session.pk) if r == "user"] == ["first"]  # nothing saved


async def test_one_turn_at_a_time_per_session_is_a_409(api_key, session, user, character):
    slow = asyncio.create_task(post_turn(session.pk, api_key, content="a slow slow story"))
    for _ in range(100):  # the first turn is running once its line is saved
        if await Message.objects.filter(session=session, role="user").aexists():
            break
        await asyncio.sleep(0.05)
    busy = await post_turn(session.pk, api_key, content="me too")
    assert busy.status_code == 409 and busy.json()["error"]["code"] == "turn_in_progress"
    other = await sync_to_async(session_create)(user=user, character=character)
    assert (await post_turn(other.pk, api_key, content="elsewhere")).status_code == 200  # another session may
    assert (await slow).status_code == 200
    assert (await post_turn(session.pk, api_key, content="now")).status_code == 200  # free again


async def test_turns_running_at_once_per_user_are_capped(api_key, user, character, settings):
    settings.QUOTA_TURNS_IN_FLIGHT = 1
    first, second = [await sync_to_async(session_create)(user=user, character=character) for _ in range(2)]
    slow = asyncio.create_task(post_turn(first.pk, api_key, content="a slow slow story"))
    for _ in range(100):
        if await Message.objects.filter(session=first, role="user").aexists():
            break
        await asyncio.sleep(0.05)
    refused = await post_turn(second.pk, api_key, content="at the same time")
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "rate_limited"
    assert (await slow).status_code == 200
    assert (await post_turn(second.pk, api_key, content="after it")).status_code == 200


async def test_a_silent_worker_ends_the_turn_with_turn_timeout(api_key, session, settings, monkeypatch):
    monkeypatch.setattr("apps.conversations.turns.enqueue", lambda *a, **k: None)  # the broker lost the job
    settings.TURN_IDLE_TIMEOUT_S = 0.5
    response = await post_turn(session.pk, api_key, content="anyone there?")
    assert response.status_code == 504 and response.json()["error"]["code"] == "turn_timeout"
    assert [s for r, _, s in await rows(session.pk) if r == "assistant"] == ["complete", "failed"]
    assert (await post_turn(session.pk, api_key, content="again")).status_code == 504  # the session was let go


@pytest.mark.usefixtures("speech_api_worker")
async def test_the_reply_spoken_as_a_base64_wav(api_key, session):
    import base64
    import io
    import wave

    response = await post_turn(session.pk, api_key, content="Say something", audio=True)
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["message"]["content"] == REPLY.format("Say something")
    with wave.open(io.BytesIO(base64.b64decode(body["audio"]))) as wav:
        assert wav.getframerate() == 22050 and wav.getnframes() / 22050 > 1.0  # a sentence or three


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("[" * 100_000 + "]" * 100_000, "invalid_json"),  # json would recurse past Python's limit: not a 500
        ('{"content": NaN}', "invalid_json"),
        ('{"content": "lone \\ud800 surrogate"}', "invalid_field"),  # PostgreSQL cannot store it
        ("\xff\xfe", "invalid_json"),
    ],
)
async def test_a_hostile_body_is_a_400_never_a_500(api_key, session, raw, code):
    response = await AsyncClient().post(
        f"/api/v1/sessions/{session.pk}/turns",
        raw.encode("latin-1") if raw.startswith("\xff") else raw,
        content_type="application/json",
        headers=bearer(api_key),
    )
    assert response.status_code == 400 and response.json()["error"]["code"] == code, response.content
    assert await Message.objects.filter(role="user").acount() == 0
