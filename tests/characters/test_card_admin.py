"""Character cards in the admin: staff import many card files at once (each on its own: a bad file is
reported and leaves nothing, the good ones become unpublished characters), an upload too large is
refused before it is read, and characters are exported as one card file or a zip of them."""

import io
import zipfile

import pytest
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.test.client import FakePayload
from django.urls import reverse
from PIL import Image

from apps.characters import cards
from apps.characters.admin_cards import card_upload_max_bytes
from apps.characters.cards import parse_card
from apps.characters.models import Character, LorebookEntry
from tests.characters.card_corpus import as_json, hostile, v2
from tests.characters.test_card_import import card_in, picture

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:characters_character_changelist")
IMPORT = reverse("admin:characters_character_import")
BAD = {case.name: case for case in hostile()}
HOSTILE = ["bad CRC on the chara chunk", "zTXt bomb", "keys not strings", "JPEG", "deep nesting in extensions"]


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    return tmp_path


@pytest.fixture
def staff(django_user_model):
    return django_user_model.objects.create_user(username="curator", password="pw", is_staff=True)


def grant(user, *codenames):
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))


def upload(name: str, data: bytes) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data, content_type="application/octet-stream")


def lorebook_card(name: str, *keys: str) -> dict:
    return v2(name=name, character_book={"entries": [{"keys": [key], "content": f"About {key}."} for key in keys]})


# --- import --------------------------------------------------------------------------------------


def test_changelist_links_to_the_import_page_for_those_who_may_add(client, staff):
    grant(staff, "view_character")
    client.force_login(staff)
    assert IMPORT not in client.get(CHANGELIST).content.decode()
    assert client.get(IMPORT).status_code == 403
    assert client.post(IMPORT, {"cards": [upload("a.json", as_json(v2()))]}).status_code == 403
    assert not Character.objects.exists()

    grant(staff, "add_character")
    assert f'href="{IMPORT}"' in client.get(CHANGELIST).content.decode()
    page = client.get(IMPORT)
    assert page.status_code == 200 and 'type="file" name="cards"' in page.content.decode()


def test_good_files_are_imported_and_each_bad_one_says_why_leaving_nothing(admin_client, media):
    files = [
        upload("nova.json", as_json(lorebook_card("Nova", "moon", "star"))),
        *[upload(f"bad-{n}.png", BAD[name].data) for n, name in enumerate(HOSTILE)],
        # readable, but the database cannot hold it: its lorebook must not be half-written
        upload(
            "huge-order.json",
            as_json(
                v2(
                    name="Half",
                    character_book={
                        "entries": [{"keys": ["a"], "content": "x"}] * 3
                        + [{"keys": ["b"], "content": "y", "insertion_order": 2**40}]
                    },
                )
            ),
        ),
        upload(
            "sage.png",
            card_in(
                picture("green"),
                ("ccv3", {**lorebook_card("Sage", "owl"), "spec": "chara_card_v3", "spec_version": "3.0"}),
            ),
        ),
    ]
    response = admin_client.post(IMPORT, {"cards": files})

    assert response.status_code == 200
    nova, sage = Character.objects.get(name="Nova"), Character.objects.get(name="Sage")
    assert Character.objects.count() == 2 and not nova.is_published and not sage.is_published
    assert sorted(LorebookEntry.objects.values_list("content", flat=True)) == [
        "About moon.",
        "About owl.",
        "About star.",
    ]
    assert sage.avatar and sorted(p.name for p in (media / "avatars").iterdir()) == ["sage.png"]
    html = response.content.decode()
    assert "2 of 8 files imported" in html
    for character in (nova, sage):
        link = reverse("admin:characters_character_change", args=[character.pk])
        assert f'Imported as <a href="{link}">{character.name}</a>' in html
    results = {r.file_name: r for r in response.context["results"]}
    for n, name in enumerate(HOSTILE):
        result = results[f"bad-{n}.png"]
        assert result.character is None and result.code == BAD[name].code and BAD[name].says in result.error, name
    assert "insertion_order" in results["huge-order.json"].error


def test_file_names_and_messages_are_shown_escaped(admin_client):
    response = admin_client.post(IMPORT, {"cards": [upload("<b>x.json", as_json({"spec": "<i>v9</i>"}))]})
    html = response.content.decode()
    assert "<b>x" not in html and "&lt;b&gt;x.json" in html
    assert "<i>v9</i>" not in html and "&lt;i&gt;v9&lt;/i&gt;" in html


def test_an_upload_declared_too_large_is_refused_before_its_body_is_read(admin_client):
    class Unread(FakePayload):
        def read(self, *args, **kwargs):
            raise AssertionError("the body was read")

    response = admin_client.post(
        IMPORT,
        {"cards": [upload("nova.json", as_json(v2()))]},
        CONTENT_LENGTH=str(card_upload_max_bytes() + 64 * 1024 + 1),  # the files' cap and room for the form
        **{"wsgi.input": Unread(b"")},
    )
    assert response.status_code == 413
    assert "an import takes at most" in response.content.decode()
    assert not Character.objects.exists()


def test_a_file_over_the_card_limit_is_reported_and_the_others_imported(admin_client, monkeypatch):
    monkeypatch.setattr(cards, "CARD_MAX_BYTES", 4000)
    big = as_json(v2(name="Big", description="d" * 5000))
    response = admin_client.post(IMPORT, {"cards": [upload("big.json", big), upload("nova.json", as_json(v2()))]})
    results = response.context["results"]
    assert [(r.file_name, r.code) for r in results] == [("big.json", "card_too_large"), ("nova.json", "")]
    assert "CARD_MAX_BYTES" in results[0].error
    assert list(Character.objects.values_list("name", flat=True)) == ["Nova"]


def test_files_passing_the_upload_cap_stop_the_import(admin_client, monkeypatch, settings):
    """The handler counts what arrives, whatever the Content-Length said: past the cap it stops reading."""
    monkeypatch.setattr(cards, "CARD_MAX_BYTES", 3000)
    settings.CARD_IMPORT_MAX_FILES = 2  # 6000 bytes of files in all
    files = [upload("nova.json", as_json(v2())), upload("big.json", as_json(v2(description="d" * 7000)))]
    response = admin_client.post(IMPORT, {"cards": files})
    assert response.status_code == 413 and "the most one import takes" in response.content.decode()
    assert not Character.objects.exists()


def test_more_files_than_allowed_are_refused(admin_client, settings):
    settings.CARD_IMPORT_MAX_FILES = 2
    files = [upload(f"{n}.json", as_json(v2(name=f"N{n}"))) for n in range(3)]
    response = admin_client.post(IMPORT, {"cards": files})
    assert response.status_code == 413 and "at most 2 files" in response.content.decode()
    assert not Character.objects.exists()


def test_no_file_chosen(admin_client):
    response = admin_client.post(IMPORT, {"cards": []})
    assert response.status_code == 400 and "Choose one or more card files" in response.content.decode()


def test_the_import_checks_the_csrf_token(admin_user):
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    refused = client.post(IMPORT, {"cards": [upload("nova.json", as_json(v2()))]})
    assert refused.status_code == 403 and not Character.objects.exists()

    token = client.get(IMPORT).cookies["csrftoken"].value
    taken = client.post(IMPORT, {"cards": [upload("nova.json", as_json(v2()))], "csrfmiddlewaretoken": token})
    assert taken.status_code == 200 and Character.objects.filter(slug="nova").exists()


# --- export --------------------------------------------------------------------------------------


def export(client, action: str, *characters):
    return client.post(CHANGELIST, {"action": action, "_selected_action": [c.pk for c in characters]})


def content(response) -> bytes:
    return b"".join(response.streaming_content)


def test_export_one_character_with_an_avatar_as_a_png_card(admin_client, character):
    character.avatar = SimpleUploadedFile("nova.png", picture("blue"), content_type="image/png")
    character.save()
    LorebookEntry.objects.create(character=character, keys=["moon"], content="Far.")

    response = export(admin_client, "export_card_v2", character)
    assert response["Content-Type"] == "image/png"
    assert response["Content-Disposition"] == 'attachment; filename="nova.png"'
    data = content(response)
    card = parse_card(data)
    assert (card.version, card.name, card.system_prompt) == ("v2", "Nova", character.persona)
    assert [e.content for e in card.character_book.entries] == ["Far."]
    assert Image.open(io.BytesIO(data)).convert("RGB").getpixel((0, 0)) == (0, 0, 255)


def test_export_one_character_without_an_avatar_as_json(admin_client, draft_character):
    response = export(admin_client, "export_card_v3", draft_character)
    assert response["Content-Type"] == "application/json"
    assert response["Content-Disposition"] == 'attachment; filename="draft.json"'
    assert parse_card(content(response)).version == "v3"


def test_export_several_characters_as_a_zip(admin_client, character, draft_character):
    response = export(admin_client, "export_card_v3", character, draft_character)
    assert response["Content-Type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(content(response))) as archive:
        assert sorted(archive.namelist()) == ["draft.json", "nova.json"]
        names = {parse_card(archive.read(name)).name for name in archive.namelist()}
    assert names == {"Nova", "Draft"}


def test_a_character_too_large_for_a_card_is_reported_the_others_exported(
    admin_client, character, draft_character, monkeypatch
):
    monkeypatch.setattr(cards, "CARD_MAX_JSON_BYTES", 600)
    draft_character.description = "d" * 700
    draft_character.save()
    response = export(admin_client, "export_card_v2", character, draft_character)
    with zipfile.ZipFile(io.BytesIO(content(response))) as archive:
        assert archive.namelist() == ["nova.json"]
    shown = [str(m) for m in get_messages(response.wsgi_request)]
    assert any(m.startswith("Not exported: Draft:") and "CARD_MAX_JSON_BYTES" in m for m in shown), shown


def test_staff_who_may_view_characters_may_export_them(client, staff, character):
    client.force_login(staff)
    assert export(client, "export_card_v2", character).status_code == 403
    grant(staff, "view_character")
    response = export(client, "export_card_v2", character)
    assert parse_card(content(response)).name == "Nova"


def test_an_exported_card_imports_as_a_copy(admin_client, character):
    character.scenario, character.tags = "A rooftop.", "space, stars"
    character.save()
    data = content(export(admin_client, "export_card_v3", character))
    admin_client.post(IMPORT, {"cards": [upload("nova.json", data)]})
    copy = Character.objects.get(slug="nova-2")
    assert (copy.name, copy.persona, copy.scenario, copy.tags) == (
        "Nova",
        character.persona,
        "A rooftop.",
        "space, stars",
    )


# --- the lorebook in the character's page ----------------------------------------------------------


def test_the_change_form_shows_the_lorebook_inline_and_saves_its_keys(admin_client, character):
    entry = LorebookEntry.objects.create(character=character, keys=["moon", "luna"], content="Far.")
    url = reverse("admin:characters_character_change", args=[character.pk])
    html = admin_client.get(url).content.decode()
    assert 'value="moon, luna"' in html and "Far.</textarea>" in html

    form = {
        "name": character.name,
        "slug": character.slug,
        "persona": character.persona,
        "language": "en",
        "alternate_greetings": "[]",
        "is_published": "on",
        "lorebook_entries-TOTAL_FORMS": "2",
        "lorebook_entries-INITIAL_FORMS": "1",
        "lorebook_entries-0-id": entry.pk,
        "lorebook_entries-0-character": character.pk,
        "lorebook_entries-0-keys": "moon, Luna , the Moon",
        "lorebook_entries-0-secondary_keys": "",
        "lorebook_entries-0-content": "Far away.",
        "lorebook_entries-0-enabled": "on",
        "lorebook_entries-0-insertion_order": "0",
        "lorebook_entries-1-character": character.pk,
        "lorebook_entries-1-keys": "sun",
        "lorebook_entries-1-content": "Hot.",
        "lorebook_entries-1-enabled": "on",
        "lorebook_entries-1-constant": "on",
        "lorebook_entries-1-insertion_order": "5",
        "lorebook_entries-1-priority": "3",
    }
    response = admin_client.post(url, form)
    assert response.status_code == 302, response.context and response.context["errors"]
    assert list(character.lorebook_entries.values_list("keys", "content", "constant", "priority")) == [
        (["moon", "Luna", "the Moon"], "Far away.", False, None),
        (["sun"], "Hot.", True, 3),
    ]


def test_a_large_lorebook_is_edited_in_its_own_list(admin_client, character):
    LorebookEntry.objects.bulk_create(
        [LorebookEntry(character=character, keys=[f"k{n}"], content=f"c{n}") for n in range(51)]
    )
    html = admin_client.get(reverse("admin:characters_character_change", args=[character.pk])).content.decode()
    assert "lorebook_entries-TOTAL_FORMS" not in html
    listed = f"{reverse('admin:characters_lorebookentry_changelist')}?character__id__exact={character.pk}"
    assert f'51 entries: <a href="{listed}">' in html
    assert admin_client.get(listed).context["cl"].result_count == 51
