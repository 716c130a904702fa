"""The sessions sidebar's domain: list, rename, delete and search, on the real PostgreSQL."""

import uuid

import pytest

from apps.characters.models import Character
from apps.conversations.models import Message
from apps.conversations.selectors import session_list, session_search
from apps.conversations.services import (
    NothingToRegenerate,
    SessionNotFound,
    reply_replace,
    session_create,
    session_delete,
    session_rename,
    turn_finish,
    turn_start,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def bob(django_user_model):
    return django_user_model.objects.create_user(username="bob", password="pw")


@pytest.fixture
def orion():
    return Character.objects.create(name="Orion", slug="orion", persona="You are Orion.", is_published=True)


def exchange(session, said: str, reply: str) -> Message:
    turn_start(session=session, content=said)
    return turn_finish(
        turn_id=uuid.uuid4(), session_id=session.pk, content=reply, emotion="happy", status="complete", timings={}
    )


def test_list_newest_first_with_character_title_and_preview(user, bob, character, orion):
    first = session_create(user=user, character=character)
    exchange(first, "Tell me about Saturn", "Saturn has rings.")
    second = session_create(user=user, character=orion)
    exchange(second, "Hello hunter", "Greetings, traveller.")
    session_create(user=bob, character=character)  # someone else's: never listed

    rows = session_list(user=user)
    assert [r.id for r in rows] == [str(second.pk), str(first.pk)]
    assert (rows[0].character_slug, rows[0].character_name) == ("orion", "Orion")
    assert rows[0].title == "Hello hunter"  # the first thing said names the session
    assert rows[0].preview == "Greetings, traveller."
    assert rows[1].preview == "Saturn has rings."
    assert rows[0].last_message_at > rows[1].last_message_at

    exchange(first, "And Jupiter?", "Jupiter is the largest.")  # talking again brings it to the top
    assert [r.id for r in session_list(user=user)] == [str(first.pk), str(second.pk)]
    assert [r.id for r in session_list(user=user, character=orion)] == [str(second.pk)]


def test_a_new_session_lists_its_greeting(user, character):
    session = session_create(user=user, character=character)
    (row,) = session_list(user=user)
    assert (row.id, row.preview, row.title) == (str(session.pk), "Hi! I'm Nova.", "")


def test_rename_mine_only(user, bob, character):
    session = session_create(user=user, character=character)
    renamed = session_rename(user=user, session_id=session.pk, title="  Star   talk  ")
    assert renamed.title == "Star talk"
    assert session_list(user=user)[0].title == "Star talk"
    assert len(session_rename(user=user, session_id=session.pk, title="x" * 500).title) == 200
    with pytest.raises(SessionNotFound) as caught:
        session_rename(user=bob, session_id=session.pk, title="mine now")
    assert caught.value.code == "unknown_session"
    with pytest.raises(SessionNotFound):
        session_rename(user=user, session_id="not-a-uuid", title="x")
    session.refresh_from_db()
    assert session.title == "x" * 200


def test_delete_mine_only_and_it_leaves_list_and_search(user, bob, character):
    session = session_create(user=user, character=character)
    exchange(session, "secret comet plans", "I will keep them.")
    with pytest.raises(SessionNotFound):
        session_delete(user=bob, session_id=session.pk)
    assert session_list(user=user) and session_search(user=user, query="comet")

    session_delete(user=user, session_id=session.pk)
    assert session_list(user=user) == []
    assert session_search(user=user, query="comet") == []
    with pytest.raises(SessionNotFound):  # a second delete: already gone
        session_delete(user=user, session_id=session.pk)
    session.refresh_from_db()
    assert session.deleted_at is not None  # soft: kept for the admin


def test_search_is_case_insensitive_over_my_sessions_with_snippet(user, bob, character, orion):
    a = session_create(user=user, character=character)
    exchange(a, "I saw the Andromeda galaxy last night", "Andromeda is 2.5 million light years away.")
    b = session_create(user=user, character=orion)
    long_text = "word " * 60 + "the ANDROMEDA myth of the chained princess " + "more " * 60
    exchange(b, "Tell me a myth", long_text)
    session_create(user=user, character=orion)  # no match
    theirs = session_create(user=bob, character=character)
    exchange(theirs, "andromeda too", "yes")

    hits = session_search(user=user, query="andromeda")
    assert [h.id for h in hits] == [str(b.pk), str(a.pk)]  # newest match first, one hit per session
    assert "ANDROMEDA myth" in hits[0].snippet and len(hits[0].snippet) <= 122
    assert hits[0].snippet.startswith("…") and hits[0].snippet.endswith("…")
    assert hits[1].snippet == "Andromeda is 2.5 million light years away."  # the newest matching message
    assert (hits[1].character_slug, hits[1].title) == ("nova", "I saw the Andromeda galaxy last night")
    assert session_search(user=user, query="   ") == []
    assert session_search(user=user, query="100%") == []  # LIKE wildcards are text here
    exchange(a, "is 100% sure?", "Quite.")
    assert [h.id for h in session_search(user=user, query="100%")] == [str(a.pk)]


def test_replace_sets_the_last_reply_aside(user, character):
    session = session_create(user=user, character=character)
    with pytest.raises(NothingToRegenerate):  # the greeting alone
        reply_replace(session=session)
    old = exchange(session, "Name a planet", "Mars.")
    asked = reply_replace(session=session)
    assert asked.content == "Name a planet"
    old.refresh_from_db()
    assert old.status == "replaced"
    with pytest.raises(NothingToRegenerate):  # the session now ends with the user's message
        reply_replace(session=session)
    assert session_list(user=user)[0].preview == "Name a planet"
    assert session_search(user=user, query="mars") == []
