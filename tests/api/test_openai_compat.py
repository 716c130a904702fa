"""Every character as an OpenAI-compatible model, driven by the official `openai` client over real
HTTP (a live Daphne of the scaled stack, a real Celery LLM worker with the scripted engine)."""

import math
import time
import uuid

import openai
import pytest
from django.conf import settings

from apps.accounts.quotas import quota_take
from apps.accounts.services import token_create
from apps.conversations.models import ChatSession, Message
from apps.conversations.services import session_create
from apps.memory.models import Memory
from tests.memories import remember

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("llm_worker")]

REPLY = "You said: {}. I am Nova. Anything else?"


@pytest.fixture
def client(daphne_url, api_key) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{daphne_url}/v1", api_key=api_key, max_retries=0, timeout=30)


def rows(session_id) -> list[tuple[str, str]]:
    return [(m.role, m.content) for m in Message.objects.filter(session_id=session_id).order_by("created_at")]


def extension(answer) -> dict:
    return answer.model_extra["personatalk"]


def test_models_are_the_characters_the_caller_may_talk_with(client, character, draft_character):
    models = client.models.list()
    assert [m.id for m in models.data] == ["nova"]  # not the draft
    nova = models.data[0]
    assert (nova.object, nova.owned_by, nova.model_extra["name"]) == ("model", "personatalk", "Nova")
    assert nova.created == int(character.created_at.timestamp())
    assert client.models.retrieve("nova").id == "nova"
    with pytest.raises(openai.NotFoundError) as missing:
        client.models.retrieve("draft")
    assert missing.value.code == "model_not_found"


def test_a_wrong_key_is_an_authentication_error(daphne_url, character):
    wrong = openai.OpenAI(base_url=f"{daphne_url}/v1", api_key="sk-not-ours", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as refused:
        wrong.models.list()
    assert refused.value.code == "invalid_api_key"
    assert refused.value.body["type"] == "invalid_request_error"
    with pytest.raises(openai.AuthenticationError):
        wrong.chat.completions.create(model="nova", messages=[{"role": "user", "content": "hi"}])
    assert not Message.objects.filter(role="user").exists()


def test_an_unknown_model_is_not_found(client, character):
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert (missing.value.code, missing.value.param) == ("model_not_found", "model")


def test_a_completion_is_a_turn_saved_in_a_session(client, user, character):
    raw = client.chat.completions.with_raw_response.create(
        model="nova", messages=[{"role": "user", "content": "I love the stars"}]
    )
    completion = raw.parse()
    assert completion.object == "chat.completion" and completion.model == "nova"
    assert completion.id.startswith("chatcmpl-")
    choice = completion.choices[0]
    assert (choice.message.role, choice.message.content) == ("assistant", REPLY.format("I love the stars"))
    assert choice.finish_reason == "stop"
    usage = completion.usage  # the scripted engine counts no prompt: both are estimated
    assert usage.prompt_tokens == 4 and usage.completion_tokens == math.ceil(len(choice.message.content) / 4)
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    session_id = extension(completion)["session_id"]
    assert raw.headers["x-personatalk-session"] == session_id
    assert ChatSession.objects.get(pk=session_id).user == user
    assert rows(session_id) == [
        ("assistant", "Hi! I'm Nova."),
        ("user", "I love the stars"),
        ("assistant", REPLY.format("I love the stars")),
    ]
    assert extension(completion)["message_id"] == str(
        Message.objects.get(session_id=session_id, role="assistant", timings__has_key="llm_ms").pk
    )


def test_a_streamed_completion(client, character):
    chunks = list(
        client.chat.completions.create(
            model="nova",
            messages=[{"role": "user", "content": "tell me about Mars"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert {c.object for c in chunks} == {"chat.completion.chunk"} and len({c.id for c in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    texts = [c.choices[0].delta.content or "" for c in chunks if c.choices]
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "stop" and set(finishes[:-1]) == {None}
    assert len([t for t in texts if t]) > 2  # in pieces, as written
    assert "".join(texts) == REPLY.format("tell me about Mars")
    saved = Message.objects.get(
        pk=extension(next(c for c in chunks if c.choices and c.choices[0].finish_reason))["message_id"]
    )
    assert (saved.content, saved.status) == ("".join(texts), "complete")
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens > 0  # include_usage: the last chunk


def test_a_raw_stream_is_server_sent_events_ending_with_done(daphne_url, api_key, character):
    """What any OpenAI client reads, not only the official one: `data:` lines, each a JSON chunk, then
    `data: [DONE]` as the last event (clients that stop on it never wait for the connection to close)."""
    import json

    import httpx

    entry = character.lorebook_entries.create(keys=["mars"], content="Mars has two moons.")
    with httpx.stream(
        "POST",
        f"{daphne_url}/v1/chat/completions",
        json={"model": "nova", "stream": True, "messages": [{"role": "user", "content": "tell me about Mars"}]},
        headers={"Authorization": f"Bearer {api_key}"},
        timeout=30,
    ) as response:
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
        events = [line.removeprefix("data: ") for line in response.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]" and events.count("[DONE]") == 1
    chunks = [json.loads(e) for e in events[:-1]]
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == REPLY.format("tell me about Mars")
    last = chunks[-1]
    assert last["choices"][0]["finish_reason"] == "stop"
    assert last["personatalk"]["lore_used"] == [entry.pk]  # the lorebook entry the line named, as memories are
    assert Message.objects.get(pk=last["personatalk"]["message_id"]).lore_used == [entry.pk]


def test_the_clients_system_message_reaches_the_prompt(client, character):
    completion = client.chat.completions.create(
        model="nova",
        messages=[
            {"role": "system", "content": "Answer like a pirate."},
            {"role": "developer", "content": [{"type": "text", "text": "Keep it short."}]},
            {"role": "user", "content": "What were you told?"},
        ],
    )
    assert completion.choices[0].message.content == "I was told: Answer like a pirate.\n\nKeep it short.."
    assert [r for r, _ in rows(extension(completion)["session_id"])] == ["assistant", "user", "assistant"]  # not saved


def test_the_grown_history_continues_the_same_session(client, character):
    history = [{"role": "user", "content": "Hello"}]
    first = client.chat.completions.create(model="nova", messages=history)
    history += [first.choices[0].message.model_dump(include={"role", "content"}), {"role": "user", "content": "More"}]
    second = client.chat.completions.create(model="nova", messages=history)
    session_id = extension(first)["session_id"]
    assert extension(second)["session_id"] == session_id
    assert rows(session_id) == [
        ("assistant", "Hi! I'm Nova."),
        ("user", "Hello"),
        ("assistant", REPLY.format("Hello")),
        ("user", "More"),
        ("assistant", REPLY.format("More")),
    ]  # nothing twice
    # a new chat in the client (its first line alone) is a new session
    third = client.chat.completions.create(model="nova", messages=[{"role": "user", "content": "Hello"}])
    assert extension(third)["session_id"] != session_id


def test_a_history_from_elsewhere_is_saved_into_a_new_session(client, character):
    completion = client.chat.completions.create(
        model="nova",
        messages=[
            {"role": "assistant", "content": "Hi! I'm Nova."},  # clients that show the greeting
            {"role": "user", "content": "Earlier line"},
            {"role": "assistant", "content": "Earlier reply"},
            {"role": "user", "content": "Now"},
        ],
    )
    assert rows(extension(completion)["session_id"]) == [
        ("assistant", "Hi! I'm Nova."),
        ("user", "Earlier line"),
        ("assistant", "Earlier reply"),
        ("user", "Now"),
        ("assistant", REPLY.format("Now")),
    ]


def test_a_session_named_by_header(client, user, character, django_user_model):
    session = session_create(user=user, character=character)
    named = client.chat.completions.create(
        model="nova",
        messages=[{"role": "user", "content": "Here"}],
        extra_headers={"X-PersonaTalk-Session": str(session.pk)},
    )
    assert extension(named)["session_id"] == str(session.pk)
    bob = django_user_model.objects.create_user(username="bob")
    theirs = session_create(user=bob, character=character)
    for session_id in (str(theirs.pk), str(uuid.uuid4()), "nope"):
        with pytest.raises(openai.NotFoundError) as missing:
            client.chat.completions.create(
                model="nova",
                messages=[{"role": "user", "content": "Here"}],
                extra_headers={"X-PersonaTalk-Session": session_id},
            )
        assert missing.value.code == "unknown_session"
    assert rows(theirs.pk) == [("assistant", "Hi! I'm Nova.")]


def test_the_characters_memory_of_the_user_is_used(client, user, character):
    remember(user, character, "The user said: I live in Lisbon with my dog Rex.")
    remembered = Memory.objects.get(user=user)
    completion = client.chat.completions.create(
        model="nova", messages=[{"role": "user", "content": "What do you remember about my pet?"}]
    )
    assert "I live in Lisbon with my dog Rex." in completion.choices[0].message.content
    assert extension(completion)["memories_used"] == [str(remembered.pk)]
    assert Message.objects.get(pk=extension(completion)["message_id"]).memories_used == [str(remembered.pk)]


def test_max_tokens_cuts_the_reply_with_finish_reason_length(client, character):
    completion = client.chat.completions.create(
        model="nova", messages=[{"role": "user", "content": "Say a lot"}], max_tokens=3, temperature=1.7, seed=4
    )
    assert completion.choices[0].message.content == "You said:"  # three words, the emotion tag the first
    assert completion.choices[0].finish_reason == "length"


@pytest.mark.parametrize(
    ("messages", "param"),
    [
        ([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}], "messages"),
        ([{"role": "user", "content": "   "}], "messages"),
        ([{"role": "wizard", "content": "hi"}], "messages[0].role"),
        ([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}], "messages[0].content"),
        ([], "messages"),
    ],
)
def test_a_bad_request_is_a_bad_request_error(client, character, messages, param):
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model="nova", messages=messages)
    assert refused.value.param == param and refused.value.body["type"] == "invalid_request_error"
    assert not Message.objects.filter(role="user").exists()


def test_the_turns_quota_is_a_rate_limit_error(client, user, character, django_user_model):
    for _ in range(settings.QUOTA_TURNS):  # the quota is counted in Redis, shared with the server
        quota_take(user_id=user.pk, kind="turn")
    with pytest.raises(openai.RateLimitError) as refused:
        client.chat.completions.create(model="nova", messages=[{"role": "user", "content": "one more"}])
    assert refused.value.code == "rate_limit_exceeded"
    assert 1 <= int(refused.value.response.headers["retry-after"]) <= settings.QUOTA_WINDOW_S
    bob = token_create(user=django_user_model.objects.create_user(username="bob"), name="t").key
    theirs = openai.OpenAI(base_url=client.base_url, api_key=bob, max_retries=0)
    assert theirs.chat.completions.create(
        model="nova", messages=[{"role": "user", "content": "hi"}]
    ).choices  # per user


def test_a_streaming_client_that_leaves_stops_the_turn(client, character):
    stream = client.chat.completions.create(
        model="nova", messages=[{"role": "user", "content": "tell it slowly"}], stream=True
    )
    got = []
    for chunk in stream:
        got.append(chunk.choices[0].delta.content or "")
        if len(got) == 3:  # the role, then two pieces
            break
    stream.close()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        reply = Message.objects.filter(role="assistant", timings__has_key="llm_stop_ms").first()
        if reply:
            break
        time.sleep(0.05)
    assert reply.status == "interrupted" and reply.content == "".join(got).strip()


def test_a_failing_model_is_a_server_error_and_never_retried(client, character):
    with pytest.raises(openai.InternalServerError) as failed:
        client.chat.completions.create(model="nova", messages=[{"role": "user", "content": "please explode"}])
    assert failed.value.status_code == 502 and failed.value.code == "llm_failed"
    assert failed.value.response.headers["x-should-retry"] == "false"  # the line is saved: a retry says it twice
    with pytest.raises(openai.APIError) as streamed:
        list(
            client.chat.completions.create(
                model="nova", messages=[{"role": "user", "content": "please explode again"}], stream=True
            )
        )
    assert "model failed" in streamed.value.message
    assert list(Message.objects.filter(role="assistant", status="failed").values_list("status", flat=True)) == [
        "failed",
        "failed",
    ]


def test_a_hostile_body_is_a_bad_request(daphne_url, api_key, character):
    import httpx

    for raw in (
        "[" * 100_000 + "]" * 100_000,
        '{"model": "nova", "messages": [{"role": "user", "content": "\\ud800"}]}',
    ):
        response = httpx.post(
            f"{daphne_url}/v1/chat/completions",
            content=raw,
            headers={"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"},
        )
        assert response.status_code == 400, response.text
        assert response.json()["error"]["type"] == "invalid_request_error"
