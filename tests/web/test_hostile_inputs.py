"""The web app's own inputs, hostile: over-long and wrong-typed query strings, titles and session ids.

Each is refused or ignored with a page, never a 500, and nothing already saved changes.
"""

import pytest
from django.urls import reverse

from apps.conversations.models import ChatSession

pytestmark = pytest.mark.django_db


@pytest.fixture
def logged_in(client, user):
    client.force_login(user)
    return client


@pytest.fixture
def session(user, character):
    return ChatSession.objects.create(user=user, character=character, title="Stars")


def test_over_long_searches_are_not_run(logged_in, character):
    for url in (reverse("web:gallery"), reverse("web:session-search")):
        response = logged_in.get(url, {"q": "x" * 100_000, "tag": ["<b>", "b" * 5000] * 50})
        assert response.status_code == 200
        # Past DATA_UPLOAD_MAX_NUMBER_FIELDS Django refuses the request before any view runs.
        assert logged_in.get(url, {"tag": ["a"] * 2000}).status_code == 400


def test_an_over_long_title_is_refused_and_the_old_one_kept(logged_in, session):
    url = reverse("web:session-rename", args=[session.pk])
    response = logged_in.post(url, {"title": "t" * 100_000}, follow=True)
    assert response.status_code == 200 and "too long" in response.content.decode()
    session.refresh_from_db()
    assert session.title == "Stars"


@pytest.mark.parametrize("bad", ["not-a-uuid", "0" * 5000, "%00", "..%2F..%2Fetc"])
def test_malformed_session_ids_are_not_found(logged_in, character, session, bad):
    assert logged_in.get(reverse("web:chat", args=[character.slug]), {"session": bad}).status_code == 404
    assert logged_in.post(reverse("web:session-rename", args=[bad]), {"title": "x"}).status_code == 404
    assert logged_in.post(reverse("web:session-delete", args=[bad]), {"confirm": "yes"}).status_code == 404
    assert ChatSession.objects.filter(pk=session.pk).exists()
