import uuid

from django.core.files.base import ContentFile
from django.db import IntegrityError, connections, transaction
from django.utils import timezone

from apps.conversations.models import AsrJob, ChatSession, Message
from apps.conversations.selectors import session_get_for_user, session_history_held, session_matching_history
from apps.conversations.utterances import utterance_put
from apps.core import sql
from apps.core.errors import AppError
from apps.realtime.protocol import ErrorCode

TITLE_MAX_CHARS = ChatSession._meta.get_field("title").max_length


class SessionNotFound(AppError):
    """No live session of this user has that id (another user's reads the same: not found)."""

    def __init__(self, message: str = "You have no session with that id."):
        super().__init__(ErrorCode.UNKNOWN_SESSION, message)


class NothingToRegenerate(AppError):
    def __init__(self, message: str = "There is no reply to regenerate in this session."):
        super().__init__(ErrorCode.NOTHING_TO_REGENERATE, message)


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


def session_rename(*, user, session_id, title: str) -> ChatSession:
    """Give one of the user's sessions a title (trimmed, at most 200 characters; blank clears it)."""
    session = session_get_for_user(user=user, session_id=session_id)
    if session is None:
        raise SessionNotFound()
    session.title = " ".join(title.split())[:TITLE_MAX_CHARS]
    session.save(update_fields=["title"])
    return session


def session_delete(*, user, session_id) -> None:
    """Delete one of the user's sessions (soft: it leaves every list, the socket and search)."""
    session = session_get_for_user(user=user, session_id=session_id)
    if session is None:
        raise SessionNotFound()
    session_soft_delete(session=session)


@transaction.atomic
def reply_replace(*, session: ChatSession) -> Message:
    """Set the session's last reply aside (status `replaced`) so it can be written again.

    The session's last visible message must be an assistant reply that follows a user message;
    returns that user message. Raises NothingToRegenerate otherwise (a greeting alone, a
    session ending with the user's message).
    """
    visible = Message.objects.select_for_update().filter(session=session).exclude(status=Message.Status.REPLACED)
    last = visible.order_by("-created_at").first()
    if last is None or last.role != Message.Role.ASSISTANT:
        raise NothingToRegenerate()
    asked = visible.filter(role=Message.Role.USER, created_at__lte=last.created_at).order_by("-created_at").first()
    if asked is None:
        raise NothingToRegenerate()
    last.status = Message.Status.REPLACED
    last.save(update_fields=["status"])
    ChatSession.objects.filter(pk=session.pk).update(updated_at=timezone.now())
    return asked


def session_soft_delete(*, session: ChatSession) -> None:
    if session.deleted_at is None:
        session.deleted_at = timezone.now()
        session.save(update_fields=["deleted_at"])


def turn_start(
    *, session: ChatSession, content: str, audio_wav: bytes | None = None, timings: dict | None = None
) -> Message:
    """Save the user's message (before any job is queued) and touch the session: on PostgreSQL in one
    statement, with no transaction of its own; elsewhere in two, in one (within a
    caller's, no savepoint round trips)."""
    message = Message(session=session, role=Message.Role.USER, content=content, timings=timings or {})
    if audio_wav:
        message.audio.save(f"{message.pk}.wav", ContentFile(audio_wav), save=False)
    fields = {"updated_at": timezone.now()}
    if not session.title:
        fields["title"] = content[:80]
    connection = connections[Message.objects.db]
    if connection.vendor != "postgresql":  # SQLite's WITH takes no INSERT
        with transaction.atomic(using=connection.alias, savepoint=False):
            message.save()
            ChatSession.objects.filter(pk=session.pk).update(**fields)
        return message
    # Every typed line's edge ran BEGIN, the INSERT, the UPDATE and COMMIT as four round trips (after
    # the user's pause ~1 ms each on the bench box, with the ORM's compiling): one statement needs no
    # transaction around it. (PostgreSQL runs a WITH's INSERT whether or not the UPDATE reads it.)
    insert, params = sql.insert(message, connection)
    touch = ", ".join(f"{sql.column(ChatSession, name, connection)} = %s" for name in fields)
    with connection.cursor() as cursor:
        cursor.execute(
            f"WITH m AS ({insert}) UPDATE {sql.table(ChatSession, connection)} SET {touch}"
            f" WHERE {sql.column(ChatSession, 'id', connection)} = %s",
            [*params, *fields.values(), sql.key(ChatSession, session.pk, connection)],
        )
    message._state.adding, message._state.db = False, connection.alias
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
    lore_used: list[int] | None = None,
) -> Message:
    """Save the character's reply for a turn, with the memories and lorebook entries its prompt held.
    Idempotent: the turn id is the message id.

    Every turn's job ends here. A reply the user cut off is usually saved by the socket first (what
    they were given): read first then. Otherwise written first, and read only on a conflict (a
    redelivered job): the usual case needs no read."""
    fields = {
        "session_id": session_id,
        "role": Message.Role.ASSISTANT,
        "content": content,
        "emotion": emotion,
        "status": status,
        "timings": timings,
        "memories_used": memories_used or [],
        "lore_used": lore_used or [],
    }
    if status == Message.Status.INTERRUPTED:
        return Message.objects.get_or_create(id=turn_id, defaults=fields)[0]
    try:
        with transaction.atomic():
            return Message.objects.create(id=turn_id, **fields)
    except IntegrityError as error:
        saved = Message.objects.filter(id=turn_id).first()
        if saved is None:  # another constraint broken (the session is gone)
            raise error from None
        return saved


def turn_end_status(*, reply: Message) -> str:
    """The `turn_end` status a saved reply gives its turn: its own, but `interrupted` for one set aside
    (`replaced`) since; a job that finds it so is late, and the socket has moved on."""
    return Message.Status.INTERRUPTED if reply.status == Message.Status.REPLACED else reply.status


def turn_interrupt(*, turn_id, session_id, spoken: str, timings: dict, emotion: str | None = None) -> Message:
    """The user cut the character off: keep only what they were given (said, or sent as text), marked
    interrupted. Whether the turn's job saved its reply first or saves it later, one row results
    (the turn id is its id) and it holds this; a reply already set aside by `regenerate` is left alone.
    `emotion`: the reply's, if known (else the job's stays, or the job adds it: turn_stop_note).
    """
    with transaction.atomic():
        return _turn_interrupt(turn_id=turn_id, session_id=session_id, spoken=spoken, timings=timings, emotion=emotion)


def _turn_interrupt(*, turn_id, session_id, spoken: str, timings: dict, emotion: str | None) -> Message:
    message, created = Message.objects.select_for_update().get_or_create(
        id=turn_id,
        defaults={
            "session_id": session_id,
            "role": Message.Role.ASSISTANT,
            "content": spoken,
            "emotion": emotion or "neutral",
            "status": Message.Status.INTERRUPTED,
            "timings": timings,
        },
    )
    if not created and message.status != Message.Status.REPLACED:
        message.content, message.status = spoken, Message.Status.INTERRUPTED
        message.emotion = emotion or message.emotion
        message.timings = {**message.timings, **timings}
        message.save(update_fields=["content", "emotion", "status", "timings"])
    return message


def turn_stop_note(*, turn_id, emotion: str, timings: dict) -> None:
    """A stopped job letting go: add what only it knows (the reply's emotion, how long it took to
    stop) to the reply the socket saved; content and status stay as the socket (or a later
    `regenerate`) left them."""
    with transaction.atomic():
        message = Message.objects.select_for_update().filter(pk=turn_id).first()
        if message is not None:
            message.emotion = emotion
            message.timings = {**message.timings, **timings}
            message.save(update_fields=["emotion", "timings"])


def turn_timings_merge(*, turn_id, timings: dict) -> None:
    """Add timings to a saved reply: the edge's (first and last audio), a stopped job's.

    The row is locked, as the socket and the workers may merge into it at the same moment.
    """
    with transaction.atomic():
        message = Message.objects.select_for_update().filter(pk=turn_id).first()
        if message is not None:
            message.timings = {**message.timings, **timings}
            message.save(update_fields=["timings"])


def session_for_client_history(*, user, character, history) -> tuple[ChatSession, list[tuple[str, str]]]:
    """The session a client's `history` ((role, content) pairs, oldest first, without its new line)
    continues, and the messages of it the session lacks: the user's session that holds the most of
    it (see `session_matching_history`), else a new one. The caller saves what it lacks
    (`session_history_import`) once it holds the session for its turn."""
    found = session_matching_history(user=user, character=character, history=history)
    if found is None:
        session = session_create(user=user, character=character)
        found = (session, session_history_held(session=session, history=history) or 0)
    session, held = found
    return session, [(role, content) for role, content in list(history)[held:]]


@transaction.atomic
def session_history_import(*, session: ChatSession, messages) -> None:
    """Save a client's messages the session lacks (its history from before we saw it), in order, as
    complete messages marked `imported` in their timings, so prompts and later calls see them."""
    for role, content in messages:  # one by one: each gets its own created_at, which orders them
        Message.objects.create(
            session=session, role=role, content=content, status=Message.Status.COMPLETE, timings={"imported": True}
        )
    if messages:
        ChatSession.objects.filter(pk=session.pk).update(updated_at=timezone.now())


def asr_job_start(*, user, audio: bytes) -> AsrJob:
    """Queue the transcription of an uploaded audio file (its size and header checked by the caller).

    The file waits in the cache (as a voice turn's utterance does) for the `workers.asr.tasks.asr_job`
    task on queue `asr_api`, queued once the job's row is committed; the row says how it went.
    """
    from workers.dispatch import enqueue

    utterance_id = utterance_put(audio)
    with transaction.atomic():
        job = AsrJob.objects.create(user=user)
        job_id = str(job.pk)
        transaction.on_commit(lambda: enqueue("workers.asr.tasks.asr_job", job_id=job_id, utterance_id=utterance_id))
    return job


_ASR_JOB_OPEN = (AsrJob.Status.QUEUED, AsrJob.Status.RUNNING)


def asr_job_begin(*, job_id) -> bool:
    """Mark a job running; False when it is gone or already finished (a task delivered twice: a no-op)."""
    return AsrJob.objects.filter(pk=job_id, status__in=_ASR_JOB_OPEN).update(status=AsrJob.Status.RUNNING) == 1


def asr_job_finish(*, job_id, text: str, language: str, duration_s: float) -> None:
    """Record a job's transcript (once: a finished job keeps its first result)."""
    AsrJob.objects.filter(pk=job_id, status__in=_ASR_JOB_OPEN).update(
        status=AsrJob.Status.DONE, text=text, language=language[:16], duration_s=duration_s, finished_at=timezone.now()
    )


def asr_job_fail(*, job_id, code: str, message: str) -> None:
    """Record why a job failed (`code` from ErrorCode); a job already finished stays as it is."""
    if code not in ErrorCode.DESCRIPTIONS:
        raise ValueError(f"{code!r} is not an ErrorCode")
    AsrJob.objects.filter(pk=job_id, status__in=_ASR_JOB_OPEN).update(
        status=AsrJob.Status.FAILED, error_code=code, error_message=message[:300], finished_at=timezone.now()
    )
