"""Two users with their own things: alice (the `user` fixture, with `api_key`) and bob, each with a
session, messages, a memory and a token, so every test can check that one never sees the other's."""

import uuid
from dataclasses import dataclass

import pytest

from apps.accounts.services import token_create
from apps.conversations.models import ChatSession, Message
from apps.conversations.services import session_create, turn_finish, turn_start
from apps.memory.models import Memory


def exchange(session: ChatSession, said: str, reply: str) -> Message:
    """A turn as the socket saves it: the user's message, then the character's reply."""
    turn_start(session=session, content=said)
    return turn_finish(
        turn_id=uuid.uuid4(), session_id=session.pk, content=reply, emotion="happy", status="complete", timings={}
    )


def bearer(key: str) -> dict:
    return {"HTTP_AUTHORIZATION": f"Bearer {key}"}


@dataclass
class Owner:
    user: object
    key: str
    auth: dict
    session: ChatSession
    memory: Memory


def _owner(user, character, *, said: str, reply: str, remembered: str) -> Owner:
    key = token_create(user=user, name=f"{user.username}'s laptop").key
    session = session_create(user=user, character=character)
    exchange(session, said, reply)
    memory = Memory.objects.create(user=user, character=character, text=remembered, kind="fact")
    return Owner(user=user, key=key, auth=bearer(key), session=session, memory=memory)


@pytest.fixture
def bob_user(django_user_model):
    return django_user_model.objects.create_user(username="bob", password="pw")


@pytest.fixture
def alice(user, character) -> Owner:
    return _owner(
        user, character, said="I play the cello", reply="A cello! Lovely.", remembered="The user plays the cello."
    )


@pytest.fixture
def bob(bob_user, character) -> Owner:
    return _owner(
        bob_user,
        character,
        said="My secret word is zucchini",
        reply="Your zucchini is safe with me.",
        remembered="The user's secret word is zucchini.",
    )
