"""A request body's fields take their own JSON type only: DRF would have turned a number into its digits
(schemathesis found `{"name": -36302}` making a token named "-36302"), "yes" into true and "5" into 5.
Each is refused with the field's error, and nothing is saved or started."""

import pytest

from apps.accounts.models import ApiToken
from apps.conversations.models import ChatSession, Message

pytestmark = pytest.mark.django_db(transaction=True)

NOT_STRINGS = [-36302, 1.5, True, ["a"], {"a": "b"}]


@pytest.mark.parametrize("value", NOT_STRINGS)
def test_a_token_name_that_is_not_a_string_is_refused_and_no_token_made(client, alice, value):
    before = ApiToken.objects.count()
    response = client.post("/api/v1/tokens", {"name": value}, content_type="application/json", **alice.auth)
    assert (response.status_code, response.json()["error"]["code"]) == (400, "invalid_field")
    assert "name" in response.json()["error"]["message"]
    assert ApiToken.objects.count() == before


@pytest.mark.parametrize("value", [5, False])
def test_the_other_string_fields_of_request_bodies(client, alice, character, value):
    def post(path, body, method="post"):
        return getattr(client, method)(path, body, content_type="application/json", **alice.auth)

    session = f"/api/v1/sessions/{alice.session.pk}"
    sessions, messages = ChatSession.objects.count(), Message.objects.count()
    refused = {
        "session's character": post("/api/v1/sessions", {"character": value}),
        "session's title": post(session, {"title": value}, method="patch"),
        "turn's line": post(f"{session}/turns", {"content": value}),
        "speech's text": post("/api/v1/tts", {"text": value}),
        "speech's voice": post("/api/v1/tts", {"text": "Hello.", "voice": value}),
    }
    for what, response in refused.items():
        assert (response.status_code, response.json()["error"]["code"]) == (400, "invalid_field"), what
    assert (ChatSession.objects.count(), Message.objects.count()) == (sessions, messages)
    alice.session.refresh_from_db()
    assert alice.session.title != str(value)
    # and a string still works
    assert post(session, {"title": "Cello talk"}, method="patch").status_code == 200


def test_a_chat_completion_whose_model_is_not_a_string_is_refused(client, alice):
    body, before = {"model": 5, "messages": [{"role": "user", "content": "hi"}]}, Message.objects.count()
    response = client.post("/v1/chat/completions", body, content_type="application/json", **alice.auth)
    assert response.status_code == 400
    assert (response.json()["error"]["param"], response.json()["error"]["code"]) == ("model", "invalid_field")
    assert Message.objects.count() == before


def test_flags_and_numbers_must_be_json_booleans_and_numbers(client, alice):
    def post(path, body):
        return client.post(path, body, content_type="application/json", **alice.auth)

    turns, messages = f"/api/v1/sessions/{alice.session.pk}/turns", Message.objects.count()
    refused = {
        "turn's stream": post(turns, {"content": "hi", "stream": "true"}),
        "turn's audio": post(turns, {"content": "hi", "audio": 1}),
        "speech's speed": post("/api/v1/tts", {"text": "Hello.", "speed": "1.5"}),
        "speech's sample rate": post("/api/v1/tts", {"text": "Hello.", "sample_rate": "22050"}),
        "speech's sample rate, a flag": post("/api/v1/tts", {"text": "Hello.", "sample_rate": True}),
    }
    for what, response in refused.items():
        assert (response.status_code, response.json()["error"]["code"]) == (400, "invalid_field"), what
    chat = {"model": "nova", "messages": [{"role": "user", "content": "hi"}]}
    for field, value in [
        ("stream_options", {"include_usage": "false"}),
        ("stream", "true"),
        ("max_tokens", "5"),
        ("n", "1"),
        ("max_tokens", 2.5),
        ("temperature", "0.7"),
    ]:
        response = post("/v1/chat/completions", {**chat, field: value})
        assert response.status_code == 400, field
        assert (response.json()["error"]["param"].split(".")[0], response.json()["error"]["code"]) == (
            field,
            "invalid_field",
        )
    assert Message.objects.count() == messages


def test_a_whole_number_is_an_integer_however_json_writes_it():
    from rest_framework.exceptions import ValidationError

    from apps.api.v1.serializers import JsonIntegerField

    field = JsonIntegerField(min_value=1)
    assert [field.run_validation(v) for v in (5, 5.0, 1e3)] == [5, 5, 1000]
    for value in (5.5, "5", True):
        with pytest.raises(ValidationError):
            field.run_validation(value)
