"""What a turn's job reads first, written in SQL for speed: the same rows as the ORM's, on the real PostgreSQL."""

import uuid

import pytest
from django.utils import timezone

from apps.characters.models import LorebookEntry
from apps.conversations.models import ChatSession, Message
from apps.conversations.selectors import session_get_for_turn, session_history_positioned
from apps.conversations.services import reply_replace, session_create, turn_finish, turn_start

pytestmark = pytest.mark.django_db


def fields_of(instance) -> dict:
    return {f.attname: getattr(instance, f.attname) for f in type(instance)._meta.concrete_fields}


def reply(session, content: str) -> Message:
    return turn_finish(
        turn_id=uuid.uuid4(), session_id=session.pk, content=content, emotion="happy", status="complete", timings={}
    )


def test_the_session_and_its_character_read_as_the_orm_reads_them(user, character):
    character.alternate_greetings = ["Hello, stargazer!"]
    character.card_data = {"spec": "chara_card_v2", "data": {"tags": ["space"]}}
    character.save()
    session = session_create(user=user, character=character)
    read = session_get_for_turn(session_id=str(session.pk))

    assert fields_of(read) == fields_of(ChatSession.objects.get(pk=session.pk))
    assert fields_of(read.character) == fields_of(type(character).objects.get(pk=character.pk))
    assert read.character.card_data["data"]["tags"] == ["space"]  # JSON decoded, as the ORM does
    assert read.created_at.tzinfo is not None
    assert read.has_lore is False
    assert not hasattr(read, "reply_saved")  # asked only with a turn id


def test_lore_counts_only_enabled_entries_and_a_saved_reply_is_seen(user, character):
    session = session_create(user=user, character=character)
    turn_id = str(uuid.uuid4())
    LorebookEntry.objects.create(character=character, keys=["moon"], content="The Moon is far.", enabled=False)
    assert session_get_for_turn(session_id=session.pk, turn_id=turn_id).has_lore is False
    assert session_get_for_turn(session_id=session.pk, turn_id=turn_id).reply_saved is False

    LorebookEntry.objects.create(character=character, keys=["sun"], content="The Sun is hot.")
    turn_start(session=session, content="Hi")
    turn_finish(turn_id=turn_id, session_id=session.pk, content="Hello!", emotion="", status="complete", timings={})
    read = session_get_for_turn(session_id=session.pk, turn_id=turn_id)
    assert (read.has_lore, read.reply_saved) == (True, True)


def test_a_deleted_or_unknown_session_reads_as_none(user, character):
    session = session_create(user=user, character=character)
    assert session_get_for_turn(session_id=uuid.uuid4()) is None
    assert session_get_for_turn(session_id="not-a-session") is None
    ChatSession.objects.filter(pk=session.pk).update(deleted_at=timezone.now())
    assert session_get_for_turn(session_id=session.pk) is None


def test_history_positions_count_from_the_start_past_replaced_replies(user, character):
    session = session_create(user=user, character=character)  # the greeting is message 0
    for i in range(3):
        turn_start(session=session, content=f"line {i}")
        reply(session, f"reply {i}")
    reply_replace(session=session)  # the last reply is set aside: neither returned nor counted
    turn_id = reply(session, "reply 2, again").pk

    positioned = session_history_positioned(session_id=session.pk, limit=3)
    assert [(position, m.content) for position, m in positioned] == [
        (4, "reply 1"),
        (5, "line 2"),
        (6, "reply 2, again"),
    ]
    assert fields_of(positioned[-1][1]) == fields_of(Message.objects.get(pk=turn_id))
    assert [position for position, _ in session_history_positioned(session_id=session.pk)] == list(range(7))


def test_a_reply_saved_twice_keeps_the_first(user, character):
    """A redelivered job, or a stop that saved what was said first: one row, the first one."""
    session = session_create(user=user, character=character)
    turn_id = uuid.uuid4()
    first = turn_finish(
        turn_id=turn_id, session_id=session.pk, content="Hi!", emotion="", status="interrupted", timings={}
    )
    again = turn_finish(
        turn_id=turn_id, session_id=session.pk, content="Hi! And more.", emotion="", status="complete", timings={}
    )
    assert (again.pk, again.content, again.status) == (first.pk, "Hi!", "interrupted")
    assert Message.objects.filter(pk=turn_id).count() == 1


def test_a_typed_line_is_saved_and_its_session_touched_in_one_statement(user, character, django_assert_num_queries):
    """The edge's write for a typed line: one statement on PostgreSQL (no BEGIN/COMMIT either), the same
    row the ORM writes, the session's `updated_at` moved and its title taken from its first line only."""
    session = session_create(user=user, character=character)
    before = ChatSession.objects.get(pk=session.pk).updated_at
    with django_assert_num_queries(1):
        message = turn_start(session=session, content="Tell me about the Moon, please.", timings={"asr_ms": 12.5})
    saved = Message.objects.get(pk=message.pk)
    assert fields_of(saved) == fields_of(message)
    assert (saved.role, saved.status, saved.emotion) == (Message.Role.USER, Message.Status.COMPLETE, "neutral")
    assert saved.timings == {"asr_ms": 12.5} and saved.memories_used == [] and saved.lore_used == []
    assert saved.created_at.tzinfo is not None and not message._state.adding
    touched = ChatSession.objects.get(pk=session.pk)
    assert touched.updated_at > before and touched.title == "Tell me about the Moon, please."
    session.refresh_from_db()
    turn_start(session=session, content="And the Sun?")
    assert ChatSession.objects.get(pk=session.pk).title == "Tell me about the Moon, please."
    assert [m.content for m in Message.objects.filter(session=session, role="user").order_by("created_at")] == [
        "Tell me about the Moon, please.",
        "And the Sun?",
    ]
