"""Celery tasks of the `embed` queue (remembering after a turn, re-embedding edits) and the `batch`
queue (re-embedding chunks, summarising idle sessions). Thin callers of apps.memory.services."""

import logging
from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.db.models import F, Max, Q
from django.utils import timezone

from apps.conversations.models import ChatSession, Message
from apps.core.events import channel_send
from apps.memory import services
from apps.memory.models import ForgottenMessage, Memory
from apps.memory.selectors import MemoryIndexUnavailable, memories_search, memory_item
from apps.realtime import protocol as p
from workers.embed.extract import candidates
from workers.job_failure import AnsweringTask

log = logging.getLogger(__name__)


@shared_task(name="workers.embed.tasks.memory_extract", acks_late=True, soft_time_limit=60, time_limit=75)
def memory_extract(*, turn_id: str, session_id: str) -> None:
    """After a turn: remember what the user said about themselves and what the character promised."""
    reply = Message.objects.select_related("session__character").filter(pk=turn_id).first()
    if reply is None or reply.session.deleted_at is not None:
        return
    said = (
        Message.objects.filter(session_id=session_id, role=Message.Role.USER, created_at__lte=reply.created_at)
        .order_by("-created_at")
        .first()
    )
    if said is None or ForgottenMessage.objects.filter(pk=said.pk).exists():  # redelivered after a deletion
        return
    session = reply.session
    for found in candidates(user_text=said.content, reply_text=reply.content, character_name=session.character.name):
        source = str(said.pk) if found.kind != Memory.Kind.PROMISE else str(reply.pk)
        services.memory_remember(
            user_id=session.user_id,
            character_id=session.character_id,
            text=found.text,
            kind=found.kind,
            importance=found.importance,
            source_message_ids=[source],
        )


@shared_task(name="workers.embed.tasks.memory_search", base=AnsweringTask, soft_time_limit=20, time_limit=30)
def memory_search(
    *, user_id: int, character_id: int, query: str, k: int, reply_channel: str, request_id: str = ""
) -> None:
    """Search a user's memories by meaning for the socket or REST (the web edge holds no model)."""
    try:
        hits = memories_search(user_id=user_id, character_id=character_id, query=query, k=k)
        answer = p.MemoryResults(request_id=request_id, items=[memory_item(m, s) for m, s in hits])
    except MemoryIndexUnavailable as exc:
        answer = p.MemoryResults(request_id=request_id, error=p.ErrorBody(code=exc.code, message=exc.message))
    channel_send(reply_channel, answer)


@shared_task(name="workers.embed.tasks.memories_embed", acks_late=True, soft_time_limit=120, time_limit=150)
def memories_embed(*, memory_ids: list[str]) -> None:
    """(Re)write the vectors of these memories into every writable index."""
    services.memories_embed(list(Memory.objects.filter(pk__in=memory_ids)))


@shared_task(name="workers.embed.tasks.reembed_chunk", acks_late=True, soft_time_limit=600, time_limit=660)
def reembed_chunk(*, job_id: int, number: int) -> None:
    """One slice of a re-embedding job. Redelivered after a killed worker (acks_late): it is idempotent."""
    try:
        services.reembed_chunk_run(job_id=job_id, number=number)
    except Exception as exc:
        log.exception("re-embedding job %s chunk %s failed", job_id, number)
        services.reembed_fail(job_id=job_id, error=f"chunk {number}: {exc!r}")
        raise


@shared_task(name="workers.embed.tasks.sessions_summarize_idle", soft_time_limit=60, time_limit=75)
def sessions_summarize_idle() -> int:
    """Queue a summary for every session idle for SESSION_IDLE_MINUTES with messages not yet summed up."""
    from workers.dispatch import enqueue

    idle_since = timezone.now() - timedelta(minutes=settings.SESSION_IDLE_MINUTES)
    sessions = (
        ChatSession.objects.filter(deleted_at__isnull=True, updated_at__lte=idle_since)
        .annotate(last=Max("messages__created_at"))
        .filter(Q(summarized_at__isnull=True) | Q(last__gt=F("summarized_at")))
        .filter(last__isnull=False)
        .values_list("pk", flat=True)
    )
    ids = [str(pk) for pk in sessions.order_by("updated_at")[:500]]
    for session_id in ids:
        if settings.TASKS_IN_PROCESS:  # the embedded beat's thread: one at a time, off the threads turns use
            session_summarize(session_id=session_id)
        else:
            enqueue("workers.embed.tasks.session_summarize", session_id=session_id)
    return len(ids)


@shared_task(name="workers.embed.tasks.session_summarize", acks_late=True, soft_time_limit=120, time_limit=150)
def session_summarize(*, session_id: str) -> None:
    """Sum a session up into one summary memory with the LLM (rewritten if the session grew)."""
    from workers.llm.summary import session_summary

    read_at = timezone.now()  # a message arriving while the LLM writes is left for the next summary
    session = ChatSession.objects.select_related("character").filter(pk=session_id, deleted_at__isnull=True).first()
    if session is None:
        return
    # Turns a deleted memory came from are forgotten: a summary must not bring them back.
    messages = session.messages.exclude(status=Message.Status.FAILED).exclude(content="").filter(forgotten=None)
    messages = list(messages.order_by("created_at"))
    # Queued twice (a slow queue outlived the beat's interval), or nothing to keep (a greeting, failed
    # turns): marked, so the session is not picked again until someone says something.
    summed_up = session.summarized_at and (not messages or messages[-1].created_at <= session.summarized_at)
    if summed_up or not any(m.role == Message.Role.USER for m in messages):
        ChatSession.objects.filter(Q(summarized_at__isnull=True) | Q(summarized_at__lt=read_at), pk=session.pk).update(
            summarized_at=read_at
        )
        return
    text = session_summary(character_name=session.character.name, messages=[(m.role, m.content) for m in messages])
    if text:
        services.session_summary_save(
            session=session, text=text, source_message_ids=[str(m.pk) for m in messages], read_at=read_at
        )
    else:
        ChatSession.objects.filter(pk=session.pk).update(summarized_at=read_at)
