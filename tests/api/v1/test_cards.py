"""Character Cards over the API: a character anyone may see comes out as a card file that reads back
the same, and staff who may add characters turn a card file into a new, unpublished character; a
hostile or oversized file, or a caller without the permission, leaves nothing behind."""

import pytest
from django.contrib.auth.models import Permission

from apps.accounts.services import token_create
from apps.characters.cards import CARD_MAX_BYTES, parse_card
from apps.characters.models import Character, LorebookEntry
from tests.api.v1.conftest import bearer
from tests.characters import card_corpus as cc

pytestmark = pytest.mark.django_db


@pytest.fixture
def curator(django_user_model):
    """A staff user who may add characters (as the admin's import asks), with an API token."""
    user = django_user_model.objects.create_user(username="carol", password="pw", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="add_character"))
    return bearer(token_create(user=user, name="cards").key)


def a_card(name="Captain Vega") -> dict:
    book = cc.book(cc.entry(keys=["nebula"], content="Vega once sailed through the Crab Nebula.", id=1))
    return cc.v2(
        name=name,
        description="A starship captain.",
        first_mes="Welcome aboard!",
        scenario="On the bridge.",
        tags=["space"],
        character_book=book,
    )


@pytest.mark.parametrize(
    ("file", "spec", "content_type"), [("png", "v2", "image/png"), ("json", "v3", "application/json")]
)
def test_a_published_character_comes_out_as_a_card_that_reads_back(client, character, file, spec, content_type):
    response = client.get(f"/api/v1/characters/nova/card?file={file}&spec={spec}")
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == content_type
    assert response["Content-Disposition"] == f'attachment; filename="nova.{file}"'
    card = parse_card(response.content)
    assert (card.name, card.first_mes) == (character.name, character.greeting)
    assert card.version == spec


def test_a_draft_is_no_ones_card_and_a_bad_spec_is_a_400(client, character, draft_character):
    hidden = client.get("/api/v1/characters/draft/card")
    assert hidden.status_code == 404 and hidden.json()["error"]["code"] == "unknown_character"
    bad = client.get("/api/v1/characters/nova/card?spec=v9")
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_field"


def test_staff_import_a_card_as_an_unpublished_character_with_its_lorebook(client, curator):
    response = client.post("/api/v1/character-cards", cc.as_json(a_card()), content_type="application/json", **curator)
    assert response.status_code == 201, response.content
    assert response.json()["name"] == "captain-vega" and response.json()["is_published"] is False
    vega = Character.objects.get(slug="captain-vega")
    assert (vega.greeting, vega.scenario) == ("Welcome aboard!", "On the bridge.")
    assert list(vega.lorebook_entries.values_list("content", flat=True)) == [
        "Vega once sailed through the Crab Nebula."
    ]
    again = client.post("/api/v1/character-cards", cc.card_png(a_card()), content_type="image/png", **curator)
    assert again.status_code == 201 and again.json()["name"] == "captain-vega-2"  # a PNG card, a slug of its own


def test_a_user_without_the_permission_cannot_import(client, alice):
    response = client.post(
        "/api/v1/character-cards", cc.as_json(a_card()), content_type="application/json", **alice.auth
    )
    assert response.status_code == 403 and response.json()["error"]["code"] == "permission_denied"
    anonymous = client.post("/api/v1/character-cards", cc.as_json(a_card()), content_type="application/json")
    assert anonymous.status_code == 401
    assert not Character.objects.filter(slug="captain-vega").exists()


@pytest.mark.parametrize("case", [c for c in cc.hostile() if len(c.data) <= CARD_MAX_BYTES][:12], ids=lambda c: c.name)
def test_a_hostile_card_is_refused_with_its_code_and_leaves_nothing(client, curator, case):
    before = (Character.objects.count(), LorebookEntry.objects.count())
    kind = "image/png" if case.data.startswith(cc.SIGNATURE) else "application/json"
    response = client.post("/api/v1/character-cards", case.data, content_type=kind, **curator)
    assert response.status_code in (400, 413), response.content
    assert response.json()["error"]["code"] == case.code
    assert (Character.objects.count(), LorebookEntry.objects.count()) == before


def test_an_oversized_upload_is_refused_from_its_declared_length(client, curator):
    response = client.post(
        "/api/v1/character-cards",
        b"{}",
        content_type="application/json",
        CONTENT_LENGTH=str(CARD_MAX_BYTES + 1),
        **curator,
    )
    assert response.status_code == 413 and response.json()["error"]["code"] == "card_too_large"
    unsupported = client.post("/api/v1/character-cards", b"name: Vega", content_type="text/yaml", **curator)
    assert unsupported.status_code == 415
