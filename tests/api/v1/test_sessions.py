"""/api/v1/sessions: list (newest first, paged), create, retrieve, rename, delete, search, messages.

Only ever the caller's: bob's session ids answer 404 `unknown_session` to alice, as ids that never existed.
"""

import uuid

import pytest

from apps.conversations.models import ChatSession
from apps.conversations.services import session_create
from tests.api.v1.conftest import exchange

pytestmark = pytest.mark.django_db(transaction=True)


def test_list_is_mine_only_newest_first_and_paged(client, alice, bob, character):
    later = session_create(user=alice.user, character=character)
    exchange(later, "What is a nebula?", "A cloud of gas and dust.")
    latest = session_create(user=alice.user, character=character)  # only the greeting so far

    page = client.get("/api/v1/sessions", {"page_size": 2}, **alice.auth).json()
    assert page["count"] == 3
    assert [s["id"] for s in page["results"]] == [str(latest.pk), str(later.pk)]
    assert page["results"][1]["preview"] == "A cloud of gas and dust."
    assert page["results"][1]["title"] == "What is a nebula?"
    assert page["results"][0]["character"] == "nova" and page["results"][0]["character_name"] == "Nova"
    assert page["results"][0]["match"] is None
    rest = client.get(page["next"], **alice.auth).json()
    assert [s["id"] for s in rest["results"]] == [str(alice.session.pk)] and rest["next"] is None
    assert str(bob.session.pk) not in str(page) + str(rest)


def test_create_retrieve_rename_delete(client, alice, character, draft_character):
    created = client.post("/api/v1/sessions", {"character": "nova"}, content_type="application/json", **alice.auth)
    assert created.status_code == 201
    session_id = created.json()["id"]
    assert created.json()["preview"] == "Hi! I'm Nova."  # the greeting opens it

    renamed = client.patch(
        f"/api/v1/sessions/{session_id}", {"title": "  Star   talk "}, content_type="application/json", **alice.auth
    )
    assert renamed.status_code == 200 and renamed.json()["title"] == "Star talk"
    assert client.get(f"/api/v1/sessions/{session_id}", **alice.auth).json()["title"] == "Star talk"

    assert client.delete(f"/api/v1/sessions/{session_id}", **alice.auth).status_code == 204
    assert ChatSession.objects.get(pk=session_id).deleted_at is not None  # soft, as the web app's delete
    gone = client.get(f"/api/v1/sessions/{session_id}", **alice.auth)
    assert (gone.status_code, gone.json()["error"]["code"]) == (404, "unknown_session")
    assert session_id not in str(client.get("/api/v1/sessions", **alice.auth).json())

    for name in ("nobody", "draft"):  # a draft is not there for a user who may not edit characters
        refused = client.post("/api/v1/sessions", {"character": name}, content_type="application/json", **alice.auth)
        assert (refused.status_code, refused.json()["error"]["code"]) == (404, "unknown_character")


@pytest.mark.parametrize(
    "method, path, body",
    [
        ("get", "/api/v1/sessions/{id}", None),
        ("patch", "/api/v1/sessions/{id}", {"title": "mine now"}),
        ("delete", "/api/v1/sessions/{id}", None),
        ("get", "/api/v1/sessions/{id}/messages", None),
    ],
)
def test_someone_elses_session_is_not_found(client, alice, bob, method, path, body):
    for session_id in (bob.session.pk, uuid.uuid4(), "not-a-uuid"):
        response = getattr(client, method)(
            path.format(id=session_id), body, content_type="application/json", **alice.auth
        )
        assert response.status_code == 404, (session_id, response.content)
        assert response.json() == {"error": {"code": "unknown_session", "message": "You have no session with that id."}}
    bob.session.refresh_from_db()
    assert bob.session.deleted_at is None and bob.session.title == "My secret word is zucchini"


def test_search_finds_a_word_inside_a_message_or_a_title(client, alice, bob, character):
    other = session_create(user=alice.user, character=character)
    exchange(other, "Tell me about Jupiter", "Jupiter has a Great Red Spot that is a storm.")
    named = session_create(user=alice.user, character=character)
    client.patch(
        f"/api/v1/sessions/{named.pk}", {"title": "Storm chasing"}, content_type="application/json", **alice.auth
    )

    found = client.get("/api/v1/sessions", {"q": "STORM"}, **alice.auth).json()
    assert [s["id"] for s in found["results"]] == [str(named.pk), str(other.pk)]  # newest match first
    by_title, by_message = found["results"]
    assert by_title["match"]["message_id"] is None and by_title["match"]["snippet"] == "Storm chasing"
    assert by_message["match"]["snippet"] == "Jupiter has a Great Red Spot that is a storm."
    assert uuid.UUID(by_message["match"]["message_id"])
    assert by_message["preview"] == "Jupiter has a Great Red Spot that is a storm."

    assert client.get("/api/v1/sessions", {"q": "cello"}, **alice.auth).json()["count"] == 1
    assert client.get("/api/v1/sessions", {"q": "zucchini"}, **alice.auth).json() == {
        "count": 0,
        "next": None,
        "previous": None,
        "results": [],
    }  # bob's words are not searched for alice


def test_messages_oldest_first_with_a_cursor(client, alice):
    for n in range(3):
        exchange(alice.session, f"question {n}", f"answer {n}")
    first = client.get(f"/api/v1/sessions/{alice.session.pk}/messages", {"page_size": 3}, **alice.auth).json()
    contents = [m["content"] for m in first["results"]]
    assert contents == ["Hi! I'm Nova.", "I play the cello", "A cello! Lovely."]
    greeting, said, reply = first["results"]
    assert said["role"] == "user" and reply["role"] == "assistant"
    assert set(reply) == set("id role content emotion status timings memories_used lore_used created_at".split())
    assert (reply["emotion"], reply["status"], reply["memories_used"]) == ("happy", "complete", [])
    assert reply["lore_used"] == []
    seen = contents
    page = first
    while page["next"]:
        page = client.get(page["next"], **alice.auth).json()
        seen += [m["content"] for m in page["results"]]
    assert seen[3:] == ["question 0", "answer 0", "question 1", "answer 1", "question 2", "answer 2"]


@pytest.mark.parametrize(
    "params, status, code",
    [
        ({"page_size": 0}, 400, "invalid_field"),
        ({"page_size": "many"}, 400, "invalid_field"),
        ({"cursor": "abc"}, 404, "not_found"),  # not base64: no page of ours
        ({"cursor": "cD0yMDI0LTEzLTQ1"}, 404, "not_found"),  # "p=2024-13-45": a position that is no time
    ],
)
def test_bad_message_page_parameters(client, alice, params, status, code):
    response = client.get(f"/api/v1/sessions/{alice.session.pk}/messages", params, **alice.auth)
    assert (response.status_code, response.json()["error"]["code"]) == (status, code)


@pytest.mark.parametrize(
    "body, code, field",
    [
        ({}, "missing_field", "character"),
        ({"character": ["nova"]}, "invalid_field", "character"),
        ({"character": "x" * 65}, "invalid_field", "character"),
    ],
)
def test_bad_create_bodies(client, alice, body, code, field):
    response = client.post("/api/v1/sessions", body, content_type="application/json", **alice.auth)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == code and response.json()["error"]["message"].startswith(f"`{field}`")


def test_bad_rename_bodies(client, alice):
    path = f"/api/v1/sessions/{alice.session.pk}"
    too_long = client.patch(path, {"title": "x" * 201}, content_type="application/json", **alice.auth)
    assert (too_long.status_code, too_long.json()["error"]["code"]) == (400, "invalid_field")
    nothing = client.patch(path, {}, content_type="application/json", **alice.auth)  # PATCH: what is left out stays
    assert (nothing.status_code, nothing.json()["title"]) == (200, "I play the cello")
    wrong = client.patch(path, {"title": ["a"]}, content_type="application/json", **alice.auth)
    assert (wrong.status_code, wrong.json()["error"]["code"]) == (400, "invalid_field")
    nul = client.patch(path, {"title": "a\x00b"}, content_type="application/json", **alice.auth)
    assert (nul.status_code, nul.json()["error"]["code"]) == (400, "invalid_field")
    alice.session.refresh_from_db()
    assert alice.session.title == "I play the cello"
