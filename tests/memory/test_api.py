"""REST: GET /api/memories (list, search) and DELETE /api/memories/<id>, only ever the caller's."""

import pytest

from apps.memory import services
from apps.memory.models import Memory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("memory_worker")]


@pytest.fixture
def seeded(user, other_user, character):
    for owner, text in (
        (user, "The user said: I live in Lisbon."),
        (user, "The user said: I love chess."),
        (other_user, "The user said: I live in Oslo."),
    ):
        services.memory_remember(
            user_id=owner.pk, character_id=character.pk, text=text, kind="fact", importance=0.7, source_message_ids=[]
        )
    return Memory.objects.get(user=user, text__contains="Lisbon"), Memory.objects.get(user=other_user)


def test_list_and_search(client, api_key, seeded):
    mine, theirs = seeded
    auth = {"HTTP_AUTHORIZATION": f"Bearer {api_key}"}
    listed = client.get("/api/memories", **auth).json()["memories"]
    assert {m["text"] for m in listed} == {"The user said: I live in Lisbon.", "The user said: I love chess."}
    assert listed[0]["character"] == "nova" and listed[0]["kind"] == "fact"
    found = client.get("/api/memories", {"character": "nova", "q": "which city is home?", "limit": 1}, **auth).json()
    assert [m["id"] for m in found["memories"]] == [str(mine.pk)]


@pytest.mark.parametrize(
    "params, status, code",
    [
        ({"q": "city"}, 400, "missing_field"),
        ({"limit": "many"}, 400, "invalid_field"),
        ({"limit": 0}, 400, "invalid_field"),
        ({"character": "zed"}, 404, "unknown_character"),
    ],
)
def test_list_errors(client, api_key, seeded, params, status, code):
    response = client.get("/api/memories", params, HTTP_AUTHORIZATION=f"Bearer {api_key}")
    assert (response.status_code, response.json()["error"]["code"]) == (status, code)


def test_delete_only_your_own(client, api_key, seeded):
    mine, theirs = seeded
    auth = {"HTTP_AUTHORIZATION": f"Bearer {api_key}"}
    assert client.get("/api/memories").status_code == 401
    assert client.delete(f"/api/memories/{mine.pk}").status_code == 401
    assert client.delete(f"/api/memories/{theirs.pk}", **auth).json()["error"]["code"] == "memory_not_found"
    assert client.delete("/api/memories/not-a-uuid", **auth).json()["error"]["code"] == "invalid_memory_id"
    assert client.delete(f"/api/memories/{mine.pk}", **auth).status_code == 204
    assert not Memory.objects.filter(pk=mine.pk).exists() and Memory.objects.filter(pk=theirs.pk).exists()
    found = client.get("/api/memories", {"character": "nova", "q": "which city is home?"}, **auth).json()
    assert "Lisbon" not in str(found)
