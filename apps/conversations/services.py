import uuid

from django.core.files.base import ContentFile
from django.db import transaction
from django.utils import timezone

from apps.conversations.models import ChatSession, Message


@transaction.atomic
def session_create(*, user, character) -> ChatSession:
    """Start a new conversation; the character's greeting is its first message."""
    session = ChatSession.objects.create(user=user, character=character)
    if character.greeting:
        Message.objects.create(session=session, role=Message.Role.ASSISTANT, content=character.greeting)
    return session


def session_open(*, user, character) -> ChatSession:
    """The user's latest live conversation with `character`, or a new one."""
    session = (
        ChatSession.objects.filter(user=user, character=character, deleted_at__isnull=True)
        .order_by("-updated_at")
        .first()
    )
    return session or session_create(user=user, character=character)


def session_soft_delete(*, session: ChatSession) -> None:
    if session.deleted_at is None:
        session.deleted_at = timezone.now()
        session.save(update_fields=["deleted_at"])


@transaction.atomic
def turn_start(
    *, session: ChatSession, content: str, audio_wav: bytes | None = None, timings: dict | None = None
) -> Message:
    """Save the user's message (before any job is queued) and touch the session."""
    message = Message(session=session, role=Message.Role.USER, content=content, timings=timings or {})
    if audio_wav:
        message.audio.save(f"{message.pk}.wav", ContentFile(audio_wav), save=False)
    message.save()
    fields = {"updated_at": timezone.now()}
    if not session.title:
        fields["title"] = content[:80]
    ChatSession.objects.filter(pk=session.pk).update(**fields)
    return message


def turn_finish(
    *,
    turn_id: uuid.UUID | str,
    session_id: uuid.UUID | str,
    content: str,
    emotion: str,
    status: str,
    timings: dict,
    memories_used: list[str] | None = None,
) -> Message:
    """Save the character's reply for a turn. Idempotent: the turn id is the message id."""
    message, _ = Message.objects.get_or_create(
        id=turn_id,
        defaults={
            "session_id": session_id,
            "role": Message.Role.ASSISTANT,
            "content": content,
            "emotion": emotion,
            "status": status,
            "timings": timings,
            "memories_used": memories_used or [],
        },
    )
    return message


def turn_interrupt(*, turn_id, session_id, spoken: str, timings: dict) -> Message:
    """The user cut the character off: keep only what was actually said, marked interrupted."""
    with transaction.atomic():
        return _turn_interrupt(turn_id=turn_id, session_id=session_id, spoken=spoken, timings=timings)


def _turn_interrupt(*, turn_id, session_id, spoken: str, timings: dict) -> Message:
    message, created = Message.objects.select_for_update().get_or_create(
        id=turn_id,
        defaults={
            "session_id": session_id,
            "role": Message.Role.ASSISTANT,
            "content": spoken,
            "status": Message.Status.INTERRUPTED,
            "timings": timings,
        },
    )
    if not created:
        message.content, message.status = spoken, Message.Status.INTERRUPTED
        message.timings = {**message.timings, **timings}
        message.save(update_fields=["content", "status", "timings"])
    return message


def turn_timings_merge(*, turn_id, timings: dict) -> None:
    """Add timings to a saved reply: the edge's (first and last audio), a stopped job's.

    The row is locked, as the socket and the workers may merge into it at the same moment.
    """
    with transaction.atomic():
        message = Message.objects.select_for_update().filter(pk=turn_id).first()
        if message is not None:
            message.timings = {**message.timings, **timings}
            message.save(update_fields=["timings"])
