"""The admin as staff use it: curate characters, try them, issue and revoke API tokens, read conversations."""

import hashlib
import io
import re

import pytest
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from PIL import Image

from apps.accounts.models import ApiToken, User
from apps.accounts.services import token_authenticate, token_create
from apps.characters.models import Character, Voice
from apps.conversations.models import ChatSession, Message

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:characters_character_changelist")


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (4, 4), "purple").save(buf, format="PNG")
    return buf.getvalue()


def _listed(response) -> set[str]:
    return {c.slug for c in response.context["cl"].result_list}


def _messages(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


@pytest.fixture
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    return tmp_path


@pytest.fixture
def voice():
    return Voice.objects.create(name="joe", engine="piper", model="en_US-joe-medium")


@pytest.fixture
def staff_client(client, django_user_model):
    """A staff user with no model permissions."""
    client.force_login(django_user_model.objects.create_user(username="staffer", password="pw", is_staff=True))
    return client


# --- characters: list, search, filters ------------------------------------------------------


def test_character_changelist_search_and_filters(admin_client, character, draft_character, voice):
    draft_character.language, draft_character.voice, draft_character.tags = "fr", voice, "secret, test"
    draft_character.save()

    response = admin_client.get(CHANGELIST)
    assert response.status_code == 200
    assert _listed(response) == {"nova", "draft"}

    assert _listed(admin_client.get(CHANGELIST, {"q": "astronomy"})) == {"nova"}  # persona
    assert _listed(admin_client.get(CHANGELIST, {"q": "secret"})) == {"draft"}  # tags
    assert _listed(admin_client.get(CHANGELIST, {"is_published__exact": "1"})) == {"nova"}
    assert _listed(admin_client.get(CHANGELIST, {"is_published__exact": "0"})) == {"draft"}
    assert _listed(admin_client.get(CHANGELIST, {"language": "fr"})) == {"draft"}
    assert _listed(admin_client.get(CHANGELIST, {"voice__id__exact": voice.pk})) == {"draft"}


def test_changelist_shows_avatar_thumbnail_or_initial(admin_client, media, character, draft_character):
    character.avatar = SimpleUploadedFile("nova.png", _png(), content_type="image/png")
    character.save()

    html = admin_client.get(CHANGELIST).content.decode()

    assert f'<img src="{character.avatar.url}"' in html
    assert re.search(r"<span[^>]*border-radius:50%[^>]*>D</span>", html)  # "Draft" has no avatar


def test_add_character_with_avatar_then_preview_on_change_form(admin_client, media, voice):
    response = admin_client.post(
        reverse("admin:characters_character_add"),
        {
            "name": "Orbit",
            "slug": "orbit",
            "persona": "You are Orbit.",
            "language": "en",
            "voice": voice.pk,
            "avatar": SimpleUploadedFile("orbit.png", _png(), content_type="image/png"),
            "lorebook_entries-TOTAL_FORMS": "0",  # the lorebook inline, left empty
            "lorebook_entries-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    orbit = Character.objects.get(slug="orbit")
    assert not orbit.is_published and orbit.avatar

    html = admin_client.get(reverse("admin:characters_character_change", args=[orbit.pk])).content.decode()
    assert f'<img src="{orbit.avatar.url}"' in html
    assert 'width="128"' in html


# --- characters: actions -------------------------------------------------------------------


def test_publish_and_unpublish_actions(admin_client, character, draft_character):
    response = admin_client.post(
        CHANGELIST, {"action": "publish", "_selected_action": [character.pk, draft_character.pk]}, follow=True
    )
    assert "Published 1 character." in _messages(response)  # nova already was
    draft_character.refresh_from_db()
    assert draft_character.is_published

    response = admin_client.post(
        CHANGELIST, {"action": "unpublish", "_selected_action": [character.pk, draft_character.pk]}, follow=True
    )
    assert "Unpublished 2 characters." in _messages(response)
    assert not Character.objects.filter(is_published=True).exists()


def test_duplicate_action_makes_unpublished_copy_with_new_slug(admin_client, character):
    response = admin_client.post(CHANGELIST, {"action": "duplicate", "_selected_action": [character.pk]}, follow=True)

    copy = Character.objects.exclude(pk=character.pk).get()
    assert copy.slug == "nova-copy" and copy.slug != character.slug
    assert not copy.is_published
    assert copy.persona == character.persona
    character.refresh_from_db()
    assert character.is_published
    assert any("Duplicated 1 character" in m and "nova-copy" in m for m in _messages(response))


def _grant(*codenames):
    """Give the `staff_client` user these permissions."""
    User.objects.get(username="staffer").user_permissions.add(*Permission.objects.filter(codename__in=codenames))


def test_view_only_staff_cannot_publish_or_duplicate(staff_client, draft_character):
    _grant("view_character")
    response = staff_client.get(CHANGELIST)
    assert response.status_code == 200
    form = response.context["action_form"]  # None when no action is allowed
    offered = set() if form is None else {name for name, _ in form.fields["action"].choices}
    assert not offered & {"publish", "unpublish", "duplicate"}

    staff_client.post(CHANGELIST, {"action": "publish", "_selected_action": [draft_character.pk]})
    staff_client.post(CHANGELIST, {"action": "duplicate", "_selected_action": [draft_character.pk]})
    draft_character.refresh_from_db()
    assert not draft_character.is_published
    assert Character.objects.count() == 1


# --- characters: try page ------------------------------------------------------------------


def _try_url(character) -> str:
    return reverse("admin:characters_character_try", args=[character.pk])


def test_change_form_links_to_try_page(admin_client, character):
    html = admin_client.get(reverse("admin:characters_character_change", args=[character.pk])).content.decode()
    assert f'href="{_try_url(character)}"' in html
    assert "Try this character" in html


def test_try_page_renders_for_staff_even_unpublished(admin_client, draft_character):
    response = admin_client.get(_try_url(draft_character))

    assert response.status_code == 200
    html = response.content.decode()
    assert '"character_name": "draft"' in html
    assert '"socket_path": "/ws"' in html
    assert "new WebSocket(" in html
    assert "text_deltas: true" in html
    assert 'type: "clear_history"' in html
    assert "Unpublished draft" in html


def test_try_page_escapes_character_text(admin_client):
    evil = Character.objects.create(name='</script><img src=x onerror="alert(1)">', slug="evil", persona="p")
    html = admin_client.get(_try_url(evil)).content.decode()
    assert "<img src=x" not in html
    assert "</script><img" not in html
    assert "innerHTML" not in html  # text only ever goes in through textContent


def test_try_page_redirects_anonymous_and_non_staff_to_login(client, user, character):
    response = client.get(_try_url(character))
    assert response.status_code == 302 and reverse("admin:login") in response["Location"]

    client.force_login(user)
    response = client.get(_try_url(character))
    assert response.status_code == 302 and reverse("admin:login") in response["Location"]


def test_try_page_needs_permission_to_see_the_character(staff_client, character):
    assert staff_client.get(_try_url(character)).status_code == 403
    _grant("view_character")
    assert staff_client.get(_try_url(character)).status_code == 200


def test_try_page_for_missing_character_redirects(admin_client):
    response = admin_client.get(reverse("admin:characters_character_try", args=[999999]))
    assert response.status_code == 302


def test_voice_changelist_search(admin_client, voice):
    response = admin_client.get(reverse("admin:characters_voice_changelist"), {"q": "joe-medium"})
    assert response.status_code == 200
    assert [v.name for v in response.context["cl"].result_list] == ["joe"]


# --- API tokens ----------------------------------------------------------------------------


def test_token_add_form_asks_only_name_and_user(admin_client):
    html = admin_client.get(reverse("admin:accounts_apitoken_add")).content.decode()
    assert 'name="name"' in html and 'name="user"' in html
    for hidden in ("key_hash", "prefix", "revoked_at", "last_used_at"):
        assert f'name="{hidden}"' not in html


def test_token_add_shows_key_once_and_stores_only_its_hash(admin_client, user):
    response = admin_client.post(reverse("admin:accounts_apitoken_add"), {"name": "ci", "user": user.pk}, follow=True)

    assert response.status_code == 200
    shown = [m for m in _messages(response) if "API key" in m]
    assert len(shown) == 1
    key = re.search(r"(pt_[A-Za-z0-9_-]{20,})", shown[0]).group(1)
    assert key in response.content.decode()

    token = ApiToken.objects.get(name="ci")
    assert token.user == user
    assert token.key_hash == hashlib.sha256(key.encode()).hexdigest()
    assert key not in {str(getattr(token, f.attname)) for f in ApiToken._meta.concrete_fields}
    assert token_authenticate(key=key) == token

    for url in (
        reverse("admin:accounts_apitoken_change", args=[token.pk]),
        reverse("admin:accounts_apitoken_changelist"),
        reverse("admin:index"),
    ):
        page = admin_client.get(url)
        assert page.status_code == 200
        assert key not in page.content.decode()


def test_token_change_form_does_not_offer_the_hash(admin_client, user):
    token = token_create(user=user, name="laptop").token
    html = admin_client.get(reverse("admin:accounts_apitoken_change", args=[token.pk])).content.decode()
    assert token.key_hash not in html
    assert token.prefix in html


def test_revoke_action(admin_client, user, api_key):
    token = ApiToken.objects.get()
    other = token_create(user=user, name="other")

    response = admin_client.post(
        reverse("admin:accounts_apitoken_changelist"), {"action": "revoke", "_selected_action": [token.pk]}, follow=True
    )

    assert "Revoked 1 token." in _messages(response)
    token.refresh_from_db()
    assert token.revoked_at is not None
    assert token_authenticate(key=api_key) is None
    assert token_authenticate(key=other.key) is not None


def test_user_admin_lists_custom_user(admin_client, user):
    response = admin_client.get(reverse("admin:accounts_user_changelist"), {"q": "alice"})
    assert response.status_code == 200
    assert [u.username for u in response.context["cl"].result_list] == ["alice"]
    assert admin_client.get(reverse("admin:accounts_user_change", args=[user.pk])).status_code == 200


# --- conversations -------------------------------------------------------------------------


@pytest.fixture
def conversation(user, character):
    session = ChatSession.objects.create(user=user, character=character, title="Stars tonight")
    Message.objects.create(session=session, role="user", content="What can I see tonight?")
    Message.objects.create(
        session=session,
        role="assistant",
        content="Jupiter rises after dark.",
        emotion="happy",
        timings={"first_token_ms": 180},
    )
    Message.objects.create(session=session, role="assistant", content="Half a sent", status="interrupted")
    return session


def test_session_changelist_search_filters_and_readonly_messages(admin_client, conversation, draft_character, user):
    other = ChatSession.objects.create(user=user, character=draft_character, title="Other")
    url = reverse("admin:conversations_chatsession_changelist")

    assert {s.pk for s in admin_client.get(url).context["cl"].result_list} == {conversation.pk, other.pk}
    assert [s.pk for s in admin_client.get(url, {"q": "Jupiter"}).context["cl"].result_list] == [conversation.pk]
    filtered = admin_client.get(url, {"character__id__exact": draft_character.pk}).context["cl"].result_list
    assert [s.pk for s in filtered] == [other.pk]
    assert admin_client.get(url, {"deleted_at__isempty": "0"}).context["cl"].result_list.count() == 0

    html = admin_client.get(reverse("admin:conversations_chatsession_change", args=[conversation.pk])).content.decode()
    assert "Jupiter rises after dark." in html and "first_token_ms" in html
    assert 'name="messages-0-content"' not in html  # inline is read-only


def test_session_soft_delete_action(admin_client, conversation):
    response = admin_client.post(
        reverse("admin:conversations_chatsession_changelist"),
        {"action": "soft_delete", "_selected_action": [conversation.pk]},
        follow=True,
    )
    assert "Marked 1 session deleted." in _messages(response)
    conversation.refresh_from_db()
    assert conversation.deleted_at is not None
    assert Message.objects.filter(session=conversation).count() == 3


def test_message_changelist_filters(admin_client, conversation):
    url = reverse("admin:conversations_message_changelist")

    def contents(**params):
        return sorted(m.content for m in admin_client.get(url, params).context["cl"].result_list)

    assert len(contents()) == 3
    assert contents(role__exact="user") == ["What can I see tonight?"]
    assert contents(status__exact="interrupted") == ["Half a sent"]
    assert contents(emotion="happy") == ["Jupiter rises after dark."]
    assert admin_client.get(reverse("admin:conversations_message_add")).status_code == 403
