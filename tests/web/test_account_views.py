"""The "My account" pages without a browser: another user's tokens and memories read as not found,
hostile inputs get a page or a 400 (never a 500) and change nothing, and a token's key is shown once.
The browser tests (test_account.py) drive the same pages against the real API, socket and index."""

import re

import pytest
from django.urls import reverse

from apps.accounts.models import ApiToken
from apps.accounts.services import token_authenticate, token_create
from apps.core.errors import AppError
from apps.memory.models import Memory
from apps.realtime.protocol import ErrorCode

pytestmark = pytest.mark.django_db

HOSTILE_IDS = ["not-an-id", "0", "-1", "9" * 40, "0" * 5000, "%00", "..%2F..%2Fetc", "1e3"]


@pytest.fixture
def logged_in(client, user):
    client.force_login(user)
    return client


@pytest.fixture
def stranger(django_user_model):
    return django_user_model.objects.create_user(username="omar", password="pw")


@pytest.fixture
def their_token(stranger):
    return token_create(user=stranger, name="omar's laptop").token


@pytest.fixture
def memories(user, stranger, character):
    """Rows only (no index): enough for listing and for the refusals, which never reach the index."""
    mine = Memory.objects.create(user=user, character=character, text="The user lives in Lisbon.", kind="fact")
    theirs = Memory.objects.create(user=stranger, character=character, text="The user lives in Oslo.", kind="fact")
    return mine, theirs


def test_every_account_page_needs_a_login(client, user, their_token, memories, character):
    mine, _ = memories
    urls = [
        reverse("web:account"),
        reverse("web:tokens"),
        reverse("web:token-revoke", args=[their_token.pk]),
        reverse("web:memories"),
        reverse("web:character-memories", args=[character.slug]),
    ]
    for url in urls:
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith(reverse("web:login")), url
    response = client.post(reverse("web:memory-delete", args=[mine.pk]))
    assert response.status_code == 302 and response["Location"].startswith(reverse("web:login"))
    assert Memory.objects.filter(pk=mine.pk).exists()


def test_the_account_page_links_to_password_tokens_and_memories(logged_in):
    page = logged_in.get(reverse("web:gallery")).content.decode()
    assert f'href="{reverse("web:account")}"' in page  # in the header's navigation
    page = logged_in.get(reverse("web:account")).content.decode()
    for name in ("web:password-change", "web:tokens", "web:memories"):
        assert f'href="{reverse(name)}"' in page


def test_a_new_key_is_shown_once_and_never_again(logged_in, user):
    response = logged_in.post(reverse("web:tokens"), {"name": "  laptop script  "}, follow=True)
    page = response.content.decode()
    token = ApiToken.objects.get(user=user)
    assert token.name == "laptop script"
    key = re.search(r'id="new-token" class="token-key" value="([^"]+)"', page).group(1)
    assert key.startswith(token.prefix) and token_authenticate(key=key) == token
    assert "no-store" in response["Cache-Control"]
    again = logged_in.get(reverse("web:tokens")).content.decode()
    assert key not in again and "laptop script" in again and token.prefix in again


@pytest.mark.parametrize("name", ["", "   ", "n" * 101, "n" * 100_000])
def test_a_bad_token_name_is_refused_and_nothing_created(logged_in, user, name):
    response = logged_in.post(reverse("web:tokens"), {"name": name})
    assert response.status_code == 400
    assert "This field is required" in response.content.decode() or "at most 100" in response.content.decode()
    assert not ApiToken.objects.filter(user=user).exists()


def test_someone_elses_token_is_not_found_and_keeps_working(logged_in, stranger, their_token):
    url = reverse("web:token-revoke", args=[their_token.pk])
    assert logged_in.get(url).status_code == 404
    assert logged_in.post(url, {"confirm": "yes"}).status_code == 404
    their_token.refresh_from_db()
    assert their_token.revoked_at is None
    assert "omar" not in logged_in.get(reverse("web:tokens")).content.decode()


@pytest.mark.parametrize("bad", HOSTILE_IDS)
def test_malformed_token_ids_are_not_found(logged_in, user, bad):
    mine = token_create(user=user, name="mine").token
    assert logged_in.get(reverse("web:token-revoke", args=[bad])).status_code == 404
    assert logged_in.post(reverse("web:token-revoke", args=[bad]), {"confirm": "yes"}).status_code == 404
    mine.refresh_from_db()
    assert mine.revoked_at is None


def test_revoking_needs_the_confirmation(logged_in, user):
    issued = token_create(user=user, name="phone")
    url = reverse("web:token-revoke", args=[issued.token.pk])
    assert "Revoke “phone”?" in logged_in.get(url).content.decode()
    assert logged_in.post(url).status_code == 400
    assert token_authenticate(key=issued.key) is not None
    response = logged_in.post(url, {"confirm": "yes"}, follow=True)
    assert response.status_code == 200 and "revoked" in response.content.decode()
    assert token_authenticate(key=issued.key) is None
    assert logged_in.get(url).status_code == 404  # gone from the list, and from revoking again


def test_memories_are_listed_newest_first_by_character(logged_in, user, character, memories):
    mine, theirs = memories
    newer = Memory.objects.create(user=user, character=character, text="The user plays chess.", kind="preference")
    overview = logged_in.get(reverse("web:memories")).content.decode()
    assert "Nova" in overview and "2 memories" in overview
    page = logged_in.get(reverse("web:character-memories", args=[character.slug])).content.decode()
    assert page.index(newer.text) < page.index(mine.text) and theirs.text not in page
    assert "Preference" in page


def test_memories_are_paged(logged_in, user, character):
    Memory.objects.bulk_create([Memory(user=user, character=character, text=f"Memory number {i}.") for i in range(45)])
    url = reverse("web:character-memories", args=[character.slug])
    first = logged_in.get(url).content.decode()
    assert first.count('class="item memory"') == 20 and "Page 1 of 3" in first
    for page in ("3", "999", "-1", "x" * 5000, "1e9"):  # out of range or malformed: a page, never a 500
        response = logged_in.get(url, {"page": page})
        assert response.status_code == 200 and 'class="item memory"' in response.content.decode()


def test_someone_elses_memory_is_not_found_and_kept(logged_in, memories):
    _, theirs = memories
    assert logged_in.post(reverse("web:memory-delete", args=[theirs.pk])).status_code == 404
    assert logged_in.get(reverse("web:memory-delete", args=[theirs.pk])).status_code == 405
    assert Memory.objects.filter(pk=theirs.pk).exists()


@pytest.mark.parametrize("bad", HOSTILE_IDS)
def test_malformed_memory_ids_are_not_found(logged_in, memories, bad):
    assert logged_in.post(reverse("web:memory-delete", args=[bad])).status_code == 404
    assert Memory.objects.count() == 2


def test_a_character_without_memories_of_mine_and_unpublished_is_not_found(logged_in, draft_character):
    assert logged_in.get(reverse("web:character-memories", args=[draft_character.slug])).status_code == 404
    assert logged_in.get(reverse("web:character-memories", args=["nobody"])).status_code == 404


def test_an_over_long_search_is_refused_and_the_list_still_shown(logged_in, character, memories):
    mine, _ = memories
    url = reverse("web:character-memories", args=[character.slug])
    response = logged_in.get(url, {"q": "x" * 100_000})
    page = response.content.decode()
    assert response.status_code == 400 and "at most 500 characters" in page and mine.text in page
    assert logged_in.get(url, {"q": ["a"] * 2000}).status_code == 400  # past DATA_UPLOAD_MAX_NUMBER_FIELDS


def test_a_search_no_worker_answers_says_so(logged_in, character, memories, monkeypatch):
    mine, _ = memories

    def no_answer(**kwargs):
        raise AppError(ErrorCode.MEMORY_TIMEOUT, "No embedding worker answered in time; try again.")

    monkeypatch.setattr("apps.web.account.memories_search_by_worker", no_answer)
    response = logged_in.get(reverse("web:character-memories", args=[character.slug]), {"q": "home town"})
    page = response.content.decode()
    assert response.status_code == 504 and "No embedding worker answered" in page and mine.text in page


def test_a_delete_goes_back_only_to_this_site(logged_in, user, character):
    one = Memory.objects.create(user=user, character=character, text="One.")
    two = Memory.objects.create(user=user, character=character, text="Two.")
    response = logged_in.post(reverse("web:memory-delete", args=[one.pk]), {"next": "https://evil.example/"})
    assert response["Location"] == reverse("web:character-memories", args=[character.slug])
    here = reverse("web:character-memories", args=[character.slug]) + "?page=2"
    assert logged_in.post(reverse("web:memory-delete", args=[two.pk]), {"next": here})["Location"] == here
    assert not Memory.objects.filter(user=user).exists()


def test_searches_over_the_quota_are_refused_with_the_list_kept(logged_in, character, memories, settings, monkeypatch):
    mine, _ = memories
    settings.QUOTA_MEMORY_SEARCHES = 1
    searched = []
    monkeypatch.setattr("apps.web.account.memories_search_by_worker", lambda **kw: searched.append(kw) or [])
    url = reverse("web:character-memories", args=[character.slug])
    assert logged_in.get(url, {"q": "home"}).status_code == 200
    response = logged_in.get(url, {"q": "home again"})
    page = response.content.decode()
    assert response.status_code == 429 and "Too many searches" in page and mine.text in page
    assert [s["query"] for s in searched] == ["home"]
