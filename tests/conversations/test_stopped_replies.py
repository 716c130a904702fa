"""A stopped reply is saved twice over, by the socket (what the client was sent) and by its job (when it
lets go), in either order: one row per turn id, and the socket's text and status win."""

import uuid

import pytest

from apps.conversations.models import Message
from apps.conversations.services import (
    reply_replace,
    session_create,
    turn_end_status,
    turn_finish,
    turn_interrupt,
    turn_start,
    turn_stop_note,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def session(user, character):
    session = session_create(user=user, character=character)
    turn_start(session=session, content="tell me a story")
    return session


def job_saves(turn_id, session, status="interrupted"):
    message = turn_finish(
        turn_id=turn_id,
        session_id=session.pk,
        content="Once upon a time there was",
        emotion="happy",
        status=status,
        timings={"llm_ms": 900},
    )
    turn_stop_note(turn_id=turn_id, emotion="happy", timings={"llm_stop_ms": 40})
    return message


def socket_saves(turn_id, session):
    return turn_interrupt(turn_id=turn_id, session_id=session.pk, spoken="Once upon", timings={}, emotion=None)


def test_the_socket_first_then_the_job_keeps_what_the_client_was_sent(session):
    turn_id = uuid.uuid4()
    socket_saves(turn_id, session)
    job_saves(turn_id, session)
    [reply] = Message.objects.filter(role="assistant", session=session).exclude(content=session.character.greeting)
    assert (reply.pk, reply.content, reply.status, reply.emotion) == (turn_id, "Once upon", "interrupted", "happy")
    assert reply.timings == {"llm_stop_ms": 40}


def test_the_job_first_then_the_socket_cuts_it_to_what_the_client_was_sent(session):
    turn_id = uuid.uuid4()
    job_saves(turn_id, session, status="complete")  # it finished just as Stop was pressed
    socket_saves(turn_id, session)
    reply = Message.objects.get(pk=turn_id)
    assert (reply.content, reply.status, reply.emotion) == ("Once upon", "interrupted", "happy")


def test_a_regenerate_in_between_is_never_undone(session):
    turn_id = uuid.uuid4()
    socket_saves(turn_id, session)
    reply_replace(session=session)
    job_saves(turn_id, session)  # the stopped job lets go after the regenerate
    socket_saves(turn_id, session)  # (and a second stop of the same turn changes nothing either)
    reply = Message.objects.get(pk=turn_id)
    assert (reply.content, reply.status) == ("Once upon", "replaced")
    assert turn_end_status(reply=reply) == "interrupted"  # a late job's turn_end stays a valid frame


def test_a_job_delivered_again_for_a_saved_reply_writes_and_sends_nothing(session, settings):
    """A worker that died after saving a reply gets its job again (late acks): the turn is answered."""
    from tests.conversations.replies import reply_run
    from workers.llm.engines import ScriptedEngine

    settings.MEMORY_EXTRACTION, settings.LLM_PREFILL_AHEAD = False, False
    turn_id, sent = str(uuid.uuid4()), []

    def run():
        reply_run(session, turn_id=turn_id, engine=ScriptedEngine(), text_deltas=True, send=lambda c, e: sent.append(e))

    run()
    assert sent and Message.objects.get(pk=turn_id).status == "complete"
    first, rows = len(sent), Message.objects.filter(session=session).count()
    run()
    assert len(sent) == first and Message.objects.filter(session=session).count() == rows
