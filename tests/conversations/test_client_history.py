"""Which session an OpenAI client's re-sent history continues (apps/conversations services and
selectors), on the real PostgreSQL: the one whose saved messages begin it, holding the most of it."""

import uuid

import pytest

from apps.conversations.models import ChatSession, Message
from apps.conversations.services import (
    session_create,
    session_for_client_history,
    session_history_import,
    turn_finish,
    turn_start,
)

pytestmark = pytest.mark.django_db

GREETING = "Hi! I'm Nova."


def exchange(session, said: str, reply: str, status: str = "complete") -> None:
    turn_start(session=session, content=said)
    turn_finish(turn_id=uuid.uuid4(), session_id=session.pk, content=reply, emotion="happy", status=status, timings={})


def saved(session) -> list[tuple[str, str]]:
    return [(m.role, m.content) for m in Message.objects.filter(session=session).order_by("created_at")]


def test_the_session_whose_messages_begin_the_history_is_continued(user, character):
    talked = session_create(user=user, character=character)
    exchange(talked, "Hello", "You said: Hello.")
    other = session_create(user=user, character=character)  # the latest, but it says something else
    exchange(other, "Something else", "Sure.")
    session, missing = session_for_client_history(
        user=user, character=character, history=[("user", "Hello"), ("assistant", "You said:  Hello.\n")]
    )
    assert session == talked and missing == []  # whitespace aside, and the greeting the client never showed
    session, missing = session_for_client_history(
        user=user,
        character=character,
        history=[("assistant", GREETING), ("user", "Hello"), ("assistant", "You said: Hello.")],
    )
    assert session == talked and missing == []  # a client that shows the greeting


def test_the_longest_match_wins_then_the_latest(user, character):
    short = session_create(user=user, character=character)
    exchange(short, "Hello", "Hi.")
    long = session_create(user=user, character=character)
    exchange(long, "Hello", "Hi.")
    exchange(long, "How are you?", "Fine.")
    empty = session_create(user=user, character=character)  # only its greeting: the start of anything
    history = [("user", "Hello"), ("assistant", "Hi."), ("user", "How are you?"), ("assistant", "Fine.")]
    assert session_for_client_history(user=user, character=character, history=history) == (long, [])
    assert session_for_client_history(user=user, character=character, history=history[:2]) == (short, [])
    # nothing said matches: the session with only its greeting holds none of it, and is reused
    assert session_for_client_history(user=user, character=character, history=[("user", "Hey")]) == (
        empty,
        [("user", "Hey")],
    )
    again = session_create(user=user, character=character)
    exchange(again, "Hello", "Hi.")  # as much of it as `short` holds, and later
    assert session_for_client_history(user=user, character=character, history=history[:2]) == (again, [])
    ChatSession.objects.filter(pk=again.pk).update(deleted_at="2026-01-01T00:00Z")
    assert session_for_client_history(user=user, character=character, history=history[:2]) == (short, [])


def test_failed_and_empty_replies_are_not_what_the_client_holds(user, character):
    session = session_create(user=user, character=character)
    exchange(session, "Hello", "", status="interrupted")  # stopped before a word reached the client
    exchange(session, "Hello again", "half a rep", status="failed")
    history = [("user", "Hello"), ("user", "Hello again")]
    assert session_for_client_history(user=user, character=character, history=history) == (session, [])


def test_a_history_no_session_begins_starts_a_new_one_with_what_it_lacks(user, character, django_user_model):
    mine = session_create(user=user, character=character)
    exchange(mine, "Hello", "Hi.")
    bob = django_user_model.objects.create_user(username="bob")
    history = [("user", "Hello"), ("assistant", "Hi."), ("user", "More")]
    session, missing = session_for_client_history(user=bob, character=character, history=history)
    assert session.user == bob and session != mine  # never another user's
    assert missing == history
    session_history_import(session=session, messages=missing)
    assert saved(session) == [("assistant", GREETING), *history]
    assert all(m.timings == {"imported": True} for m in Message.objects.filter(session=session, role="user"))
    # the client's next call finds it, with nothing left to import
    grown = [*history, ("assistant", "Right."), ("user", "Next")]
    session_history_import(session=session, messages=[("assistant", "Right.")])
    assert session_for_client_history(user=bob, character=character, history=grown) == (session, [("user", "Next")])


def test_a_session_that_says_more_than_the_history_is_not_continued(user, character):
    session = session_create(user=user, character=character)
    exchange(session, "Hello", "Hi.")
    exchange(session, "And then?", "Then.")
    found, missing = session_for_client_history(user=user, character=character, history=[("user", "Hello")])
    assert found != session and missing == [("user", "Hello")]
