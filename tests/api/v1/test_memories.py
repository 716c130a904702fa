"""/api/v1/memories: list (newest first), one, delete, and search by meaning through the embed worker."""

import pytest

from apps.memory import services
from apps.memory.models import Memory
from tests.conftest import chroma_empty

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _empty_index():
    """The database starts empty each test, so must the index derived from it."""
    chroma_empty()


def test_list_get_and_delete_only_my_own(client, alice, bob, character):
    newer = Memory.objects.create(user=alice.user, character=character, text="The user lives in Lisbon.")
    listed = client.get("/api/v1/memories", **alice.auth).json()
    assert [m["id"] for m in listed["results"]] == [str(newer.pk), str(alice.memory.pk)]
    assert listed["results"][0] == {
        "id": str(newer.pk),
        "text": "The user lives in Lisbon.",
        "kind": "fact",
        "importance": 0.5,
        "character": "nova",
        "created_at": listed["results"][0]["created_at"],
        "similarity": None,
    }
    assert client.get("/api/v1/memories", {"character": "nova"}, **alice.auth).json()["count"] == 2
    unknown = client.get("/api/v1/memories", {"character": "zed"}, **alice.auth)
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, "unknown_character")
    assert "zucchini" not in str(listed)

    for memory_id in (bob.memory.pk, "not-a-uuid"):
        for call in (client.get, client.delete):
            response = call(f"/api/v1/memories/{memory_id}", **alice.auth)
            assert (response.status_code, response.json()["error"]["code"]) == (404, "memory_not_found")
    assert Memory.objects.filter(pk=bob.memory.pk).exists()

    assert client.get(f"/api/v1/memories/{newer.pk}", **alice.auth).json()["text"] == "The user lives in Lisbon."
    assert client.delete(f"/api/v1/memories/{newer.pk}", **alice.auth).status_code == 204
    assert [m["id"] for m in client.get("/api/v1/memories", **alice.auth).json()["results"]] == [str(alice.memory.pk)]


@pytest.mark.parametrize(
    "params, status, code",
    [
        ({"q": "city"}, 400, "missing_field"),
        ({"character": "nova"}, 400, "missing_field"),
        ({"character": "nova", "q": "city", "limit": 0}, 400, "invalid_field"),
        ({"character": "zed", "q": "city"}, 404, "unknown_character"),
    ],
)
def test_search_errors(client, alice, params, status, code):
    response = client.get("/api/v1/memories/search", params, **alice.auth)
    assert (response.status_code, response.json()["error"]["code"]) == (status, code)


@pytest.mark.usefixtures("memory_worker")
def test_search_by_meaning_finds_mine_never_theirs(client, alice, bob_user, character, settings):
    for owner, text in (
        (alice.user, "The user said: I live in Lisbon."),
        (alice.user, "The user said: I love chess."),
        (bob_user, "The user said: I live in Oslo."),
    ):
        services.memory_remember(
            user_id=owner.pk, character_id=character.pk, text=text, kind="fact", importance=0.7, source_message_ids=[]
        )
    found = client.get(
        "/api/v1/memories/search", {"character": "nova", "q": "which city is home?", "limit": 2}, **alice.auth
    )
    assert found.status_code == 200, found.content
    results = found.json()["results"]
    assert results[0]["text"] == "The user said: I live in Lisbon." and 0 < results[0]["similarity"] <= 1
    assert "Oslo" not in str(results) and len(results) == 2

    settings.QUOTA_MEMORY_SEARCHES = 1  # the one above counted
    limited = client.get("/api/v1/memories/search", {"character": "nova", "q": "chess"}, **alice.auth)
    assert (limited.status_code, limited.json()["error"]["code"]) == (429, "rate_limited")
    assert int(limited["Retry-After"]) >= 1
