"""A reply written to a draft (a partial transcript, REPLY_ON_PARTIAL): saved only once the final
transcript confirms it, after the user's message; dropped, it leaves nothing behind."""

import threading
import time
import uuid

import pytest
from django.test import override_settings

from apps.conversations import turns
from apps.conversations.cancel import turn_cancel, turn_confirm, turn_drop
from apps.conversations.models import Message
from apps.conversations.services import session_create
from apps.realtime import protocol as p
from tests.conversations.replies import reply_job
from tests.conversations.test_prompt_prefix import RecordingEngine

pytestmark = [pytest.mark.django_db(transaction=True)]

DRAFT = "Tell me about the moon"


@pytest.fixture
def session(user, character):
    return session_create(user=user, character=character)


@pytest.fixture
def queued(monkeypatch) -> list[tuple[str, dict]]:
    """The jobs a reply queues (memory extraction), recorded instead of run."""
    jobs = []
    monkeypatch.setattr(turns, "enqueue", lambda name, **kwargs: jobs.append((name, kwargs)))
    return jobs


class DraftReply:
    """text_turn_run on a draft, in a thread as a worker runs it; its frames are collected."""

    def __init__(self, session, draft: str = DRAFT):
        self.turn_id, self.engine, self.events = str(uuid.uuid4()), RecordingEngine(), []
        kwargs = reply_job(
            session,
            turn_id=self.turn_id,
            submitted_at=time.time(),
            engine=self.engine,
            send=lambda channel, event: self.events.append(event),
            draft=draft,
        )
        self.thread = threading.Thread(target=turns.text_turn_run, kwargs=kwargs)
        self.thread.start()

    @property
    def frames(self) -> list:
        return [frame for event in self.events for frame in event.frames]

    def wait_written(self) -> None:
        """Until the whole reply has been sent (the job then waits for the confirmation)."""
        for _ in range(500):
            if any(isinstance(f, p.Response) and f.content.endswith("Anything else?") for f in self.frames):
                return
            time.sleep(0.01)
        raise AssertionError(f"the reply was not written: {self.frames}")

    def join(self) -> None:
        self.thread.join(timeout=30)
        assert not self.thread.is_alive()


@override_settings(MEMORY_EXTRACTION=True)
def test_a_confirmed_draft_reply_is_saved_after_the_users_message(session, queued):
    reply = DraftReply(session)
    reply.wait_written()
    assert reply.engine.prompts[0][-1] == {"role": "user", "content": DRAFT}  # the draft is the user's line
    time.sleep(0.2)  # the job is waiting: it must not have saved anything yet
    assert not Message.objects.filter(pk=reply.turn_id).exists()
    assert not any(isinstance(f, p.LlmEnd | p.TurnEnd) for f in reply.frames)
    speech_end_at = time.time()
    assert turns.transcript_keep(
        session=session,
        text=DRAFT + ".",
        pcm=bytes(3200),
        timings={},
        turn_id=reply.turn_id,
        speech_end_at=speech_end_at,
    )
    reply.join()
    rows = list(Message.objects.filter(session=session).order_by("created_at"))
    assert [(m.role, m.content) for m in rows[:2]] == [("assistant", "Hi! I'm Nova."), ("user", DRAFT + ".")]
    saved = rows[2]
    assert str(saved.pk) == reply.turn_id and saved.content == f"You said: {DRAFT}. I am Nova. Anything else?"
    assert saved.timings["reply_on_partial"] is True
    assert saved.timings["first_token_at_ms"] < 0  # written before the user had finished
    assert isinstance(reply.frames[-1], p.TurnEnd) and reply.frames[-1].message_id == reply.turn_id
    assert queued == [("workers.embed.tasks.memory_extract", {"turn_id": reply.turn_id, "session_id": str(session.pk)})]


@override_settings(MEMORY_EXTRACTION=True)
def test_a_cancelled_draft_reply_leaves_nothing(session, queued):
    reply = DraftReply(session)
    reply.wait_written()
    sent = len(reply.events)
    turn_cancel(turn_id=reply.turn_id)
    reply.join()
    assert len(reply.events) == sent  # nothing more: no llm_end, no turn_end
    assert not Message.objects.filter(pk=reply.turn_id).exists()
    assert queued == []  # no memory job for a reply nobody heard
    # too late to keep it: the user's message is saved, the caller queues a new reply
    kept = turns.transcript_keep(
        session=session, text=DRAFT, pcm=bytes(3200), timings={}, turn_id=reply.turn_id, speech_end_at=time.time()
    )
    assert kept is False
    assert not Message.objects.filter(pk=reply.turn_id).exists()


def test_a_draft_reply_waits_only_so_long(session, queued, monkeypatch):
    monkeypatch.setattr(turns, "DRAFT_CONFIRM_WAIT_S", 0.3)
    reply = DraftReply(session)
    reply.join()
    assert not Message.objects.filter(pk=reply.turn_id).exists()
    assert not any(isinstance(f, p.LlmEnd | p.TurnEnd) for f in reply.frames)
    assert turn_confirm(turn_id=reply.turn_id, speech_end_at=time.time()) is False


def test_a_draft_reply_that_fails_is_dropped_in_silence(session, queued):
    reply = DraftReply(session, draft="please explode")  # the scripted engine fails after a word
    reply.join()
    assert not Message.objects.filter(pk=reply.turn_id).exists()
    assert not any(isinstance(f, p.Error | p.TurnEnd) for f in reply.frames)  # the user's turn has not failed
    assert turn_confirm(turn_id=reply.turn_id, speech_end_at=time.time()) is False


def test_confirmed_or_dropped_is_decided_once():
    kept, dropped = str(uuid.uuid4()), str(uuid.uuid4())
    assert turn_confirm(turn_id=kept, speech_end_at=1.0)
    assert turn_drop(turn_id=kept) is False and turn_confirm(turn_id=kept, speech_end_at=2.0)
    assert turn_drop(turn_id=dropped)
    assert turn_confirm(turn_id=dropped, speech_end_at=1.0) is False and turn_drop(turn_id=dropped)


def test_a_draft_reply_killed_at_its_time_limit_is_dropped_unless_confirmed(session, monkeypatch):
    """The worker's hook that answers for a dead reply job (workers/job_failure.py)."""
    from workers import job_failure

    sent = []
    monkeypatch.setattr(job_failure, "channel_send", lambda channel, event: sent.append(event))
    dropped, kept = str(uuid.uuid4()), str(uuid.uuid4())
    job = {"session_id": str(session.pk), "reply_channel": "test", "draft": DRAFT}
    job_failure._reply_failed({**job, "turn_id": dropped}, "The reply took too long and was stopped.")
    assert sent == [] and not Message.objects.filter(pk=dropped).exists()
    assert turn_confirm(turn_id=dropped, speech_end_at=time.time()) is False  # the socket queues a new reply

    assert turns.transcript_keep(
        session=session, text=DRAFT, pcm=bytes(3200), timings={}, turn_id=kept, speech_end_at=time.time()
    )
    job_failure._reply_failed({**job, "turn_id": kept}, "The reply took too long and was stopped.")
    assert Message.objects.get(pk=kept).status == "failed"  # confirmed: the user's turn fails as any other
    assert [f.type for f in sent[0].frames] == ["error", "turn_end"]
