"""A reply job (`text_turn_run`) run here, as the llm worker runs it, for tests about the turn itself."""

import uuid

from apps.conversations.models import Message
from apps.conversations.services import turn_start
from apps.conversations.turns import text_turn_run


def no_memories(**_) -> tuple[list, dict]:
    return [], {}


def reply_job(
    session, *, engine, turn_id=None, send=None, recall=no_memories, text_deltas=False, submitted_at=0.0, **options
) -> dict:
    """The keyword arguments of the job that answers `session`'s last user message (frames go to `send`)."""
    return dict(
        turn_id=turn_id or str(uuid.uuid4()),
        session_id=str(session.pk),
        reply_channel="test",
        text_deltas=text_deltas,
        submitted_at=submitted_at,
        engine=engine,
        recall=recall,
        send=send or (lambda channel, event: None),
        **options,
    )


def reply_run(session, **job) -> str:
    """Run the reply job to `session`'s last user message here; its turn id."""
    job = reply_job(session, **job)
    text_turn_run(**job)
    return job["turn_id"]


def reply_to(session, line: str, **job) -> Message:
    """The user says `line`; the reply, as saved."""
    turn_start(session=session, content=line)
    return Message.objects.get(pk=reply_run(session, **job))
