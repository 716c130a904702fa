import functools
import uuid
from dataclasses import dataclass
from datetime import datetime

from django.db import connections
from django.db.models import OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce

from apps.characters.models import Character, LorebookEntry
from apps.conversations.models import AsrJob, ChatSession, Message
from apps.core import sql

PREVIEW_CHARS = 120  # of the last message, in the sessions sidebar
SNIPPET_CHARS = 120  # of a search hit, around the match
# A client's history (an OpenAI client re-sends it every call) is compared with this many of the
# caller's latest sessions with the character: one query each, bounded.
HISTORY_MATCH_SESSIONS = 20


@dataclass(frozen=True)
class SessionSummary:
    """A row of the sessions sidebar."""

    id: str
    character_slug: str
    character_name: str
    title: str
    created_at: datetime
    last_message_at: datetime
    preview: str


@dataclass(frozen=True)
class SessionHit:
    """A session holding a message that matches a search, with the newest matching message's snippet."""

    id: str
    character_slug: str
    character_name: str
    title: str
    message_id: str
    message_at: datetime
    snippet: str


def session_history(*, session_id, limit: int = 40) -> list[Message]:
    """The session's last `limit` messages, oldest first (failed ones included, replaced ones not)."""
    rows = list(
        Message.objects.filter(session_id=session_id)
        .exclude(status=Message.Status.REPLACED)
        .order_by("-created_at")[:limit]
    )
    rows.reverse()
    return rows


def session_history_positioned(*, session_id, limit: int = 80) -> list[tuple[int, Message]]:
    """The session's last `limit` messages, oldest first, each with its position in the session (0 =
    its first message; replaced ones are neither returned nor counted), in one query.

    The positions let the prompt drop old turns in blocks counted from the session's start. Every
    turn's job runs this before its prompt, so it is written in SQL: the ORM's compiling the same
    query (a window over a filtered, sliced set) took longer than PostgreSQL's running it.
    """
    connection = connections[Message.objects.db]
    with connection.cursor() as cursor:
        cursor.execute(
            _history_sql(connection.alias),
            [sql.key(ChatSession, session_id, connection), Message.Status.REPLACED.value, limit],
        )
        rows = cursor.fetchall()
    rows.reverse()
    return [(row[-1], sql.instance(Message, row, 0, connection)) for row in rows]


@functools.cache
def _history_sql(alias: str) -> str:
    connection = connections[alias]
    table, created = sql.table(Message, connection), sql.column(Message, "created_at", connection)
    status, session = sql.column(Message, "status", connection), sql.column(Message, "session", connection)
    return (
        f"SELECT {sql.columns(Message, 'positioned', connection)}, positioned.position FROM"
        f" (SELECT *, ROW_NUMBER() OVER (ORDER BY {created}) - 1 AS position FROM {table}"
        f" WHERE {session} = %s AND {status} <> %s) AS positioned ORDER BY {created} DESC LIMIT %s"
    )


def session_latest(*, user, character) -> ChatSession | None:
    """The session a socket's `connect` opens for this user and character (the latest live one), if any."""
    return (
        ChatSession.objects.filter(user=user, character=character, deleted_at__isnull=True)
        .order_by("-updated_at")
        .first()
    )


def characters_talked_to(*, user) -> set[int]:
    """Ids of the characters the user has a live session with (one they can continue)."""
    qs = ChatSession.objects.filter(user=user, deleted_at__isnull=True)
    return set(qs.values_list("character_id", flat=True).distinct())


def session_get_for_turn(*, session_id, turn_id=None) -> ChatSession | None:
    """The live session a turn is in, with its character; its `has_lore` says whether the character
    has enabled lorebook entries (most have none: the prompt then reads none); with `turn_id`, its
    `reply_saved` says whether that turn's reply is saved already, whatever its status (a reply's id
    is its turn id). All in one query.

    Every turn's job runs this first, so it is written in SQL: the ORM's compiling it (a join and two
    EXISTS) took 2.7 ms of Python, PostgreSQL's running it 0.5."""
    using = ChatSession.objects.db
    row = sql.one_row(_session_for_turn_sql, (Message, turn_id), (ChatSession, session_id), using=using)
    if row is None:
        return None
    connection = connections[using]
    session = sql.instance(ChatSession, row, 0, connection)
    character = sql.instance(Character, row, len(ChatSession._meta.concrete_fields), connection)
    ChatSession.character.field.set_cached_value(session, character)
    session.has_lore, reply_saved = bool(row[-2]), bool(row[-1])
    if turn_id is not None:
        session.reply_saved = reply_saved
    return session


@functools.cache
def _session_for_turn_sql(alias: str) -> str:
    connection = connections[alias]

    def column(model, name: str) -> str:
        return sql.column(model, name, connection)

    session, character, lore, message = (
        sql.table(m, connection) for m in (ChatSession, Character, LorebookEntry, Message)
    )
    return (
        f"SELECT {sql.columns(ChatSession, 's', connection)}, {sql.columns(Character, 'c', connection)},"
        f" EXISTS(SELECT 1 FROM {lore} l WHERE l.{column(LorebookEntry, 'character')} = c.{column(Character, 'id')}"
        f" AND l.{column(LorebookEntry, 'enabled')}),"
        f" EXISTS(SELECT 1 FROM {message} m WHERE m.{column(Message, 'id')} = %s)"
        f" FROM {session} s INNER JOIN {character} c ON c.{column(Character, 'id')} = s.{column(ChatSession, 'character')}"
        f" WHERE s.{column(ChatSession, 'id')} = %s AND s.{column(ChatSession, 'deleted_at')} IS NULL"
    )


def session_is_new(*, session_id) -> bool:
    """Whether the user has said nothing yet in the session (only the greeting is there)."""
    return not Message.objects.filter(session_id=session_id, role=Message.Role.USER).exists()


def session_get_for_user(*, user, session_id, character=None) -> ChatSession | None:
    """The user's live session with this id (and with `character`, if given), or None: another
    user's, a deleted one and a malformed id all read as none."""
    try:
        session_id = uuid.UUID(str(session_id))
    except ValueError:
        return None
    rows = ChatSession.objects.select_related("character").filter(pk=session_id, user=user, deleted_at__isnull=True)
    if character is not None:
        rows = rows.filter(character=character)
    return rows.first()


@dataclass(frozen=True)
class TurnTimings:
    """A reply's stage timings (ms) and those of the user's message it answers (ASR, for a spoken one)."""

    reply: dict
    utterance: dict


def message_timings_for_user(*, user, message_id) -> TurnTimings | None:
    """The timings of one of the user's replies in a live session, or None: another user's message,
    a deleted session's and a malformed id all read as none."""
    try:
        message_id = uuid.UUID(str(message_id))
    except ValueError:
        return None
    reply = (
        Message.objects.filter(pk=message_id, session__user=user, session__deleted_at__isnull=True)
        .only("session_id", "created_at", "timings")
        .first()
    )
    if reply is None:
        return None
    asked = (
        Message.objects.filter(session_id=reply.session_id, role=Message.Role.USER, created_at__lte=reply.created_at)
        .order_by("-created_at")
        .values_list("timings", flat=True)
        .first()
    )
    return TurnTimings(reply=reply.timings or {}, utterance=asked or {})


def _visible_messages():
    return Message.objects.exclude(status=Message.Status.REPLACED)


def sessions_of(*, user, character=None) -> QuerySet[ChatSession]:
    """The user's live sessions, the latest message first (a query to page through); each carries
    `last_at` and `last_text`, of its last visible message. Turn one into a row with `session_summary`."""
    last = _visible_messages().filter(session=OuterRef("pk")).order_by("-created_at")
    rows = (
        ChatSession.objects.filter(user=user, deleted_at__isnull=True)
        .select_related("character")
        .annotate(last_at=Subquery(last.values("created_at")[:1]), last_text=Subquery(last.values("content")[:1]))
    )
    if character is not None:
        rows = rows.filter(character=character)
    return rows.order_by(Coalesce("last_at", "created_at").desc(), "-created_at", "-pk")


def session_summary(session: ChatSession) -> SessionSummary:
    """A row of `sessions_of` as the sessions sidebar (and the REST API) shows it."""
    return SessionSummary(
        id=str(session.pk),
        character_slug=session.character.slug,
        character_name=session.character.name,
        title=session.title,
        created_at=session.created_at,
        last_message_at=session.last_at or session.created_at,
        preview=(session.last_text or "")[:PREVIEW_CHARS],
    )


def session_list(*, user, character=None, limit: int = 50) -> list[SessionSummary]:
    """The user's live sessions, the latest message first, each with its last message as preview."""
    return [session_summary(s) for s in sessions_of(user=user, character=character)[:limit]]


def session_summaries(*, user, session_ids) -> dict[str, SessionSummary]:
    """The user's live sessions among `session_ids`, by id (others' and deleted ones are left out)."""
    ids = []
    for session_id in session_ids:
        try:
            ids.append(uuid.UUID(str(session_id)))
        except ValueError:
            continue  # a malformed id is no session
    return {str(s.pk): session_summary(s) for s in sessions_of(user=user).filter(pk__in=ids)}


def session_search(*, user, query: str, limit: int = 50) -> list[SessionHit]:
    """The user's live sessions whose title or a message (of either side) contains `query` (any case),
    newest match first.

    A substring match (icontains: LIKE on SQLite, UPPER … LIKE on PostgreSQL); each session appears
    once, with a snippet of its newest matching message, or of its title when only the title matches
    (then `message_id` is "" and `message_at` is when the session last changed).
    """
    query = query.strip()
    if not query:
        return []
    rows = (
        _visible_messages()
        .filter(session__user=user, session__deleted_at__isnull=True, content__icontains=query)
        .select_related("session__character")
        .order_by("-created_at")
    )
    hits: dict[str, SessionHit] = {}
    for m in rows.iterator(chunk_size=200):
        key = str(m.session_id)
        if key in hits:
            continue
        s = m.session
        hits[key] = SessionHit(
            id=key,
            character_slug=s.character.slug,
            character_name=s.character.name,
            title=s.title,
            message_id=str(m.pk),
            message_at=m.created_at,
            snippet=_snippet(m.content, query),
        )
        if len(hits) >= limit:
            break
    titled = (
        ChatSession.objects.filter(user=user, deleted_at__isnull=True, title__icontains=query)
        .select_related("character")
        .order_by("-updated_at")[:limit]
    )
    for s in titled:
        hits.setdefault(
            str(s.pk),
            SessionHit(
                id=str(s.pk),
                character_slug=s.character.slug,
                character_name=s.character.name,
                title=s.title,
                message_id="",
                message_at=s.updated_at,
                snippet=_snippet(s.title, query),
            ),
        )
    return sorted(hits.values(), key=lambda hit: hit.message_at, reverse=True)[:limit]


def session_messages(*, session: ChatSession) -> QuerySet[Message]:
    """A session's messages as its history shows them (replaced replies left out), oldest first."""
    return _visible_messages().filter(session=session).order_by("created_at", "id")


def asr_job_get_for_user(*, user, job_id) -> AsrJob | None:
    """One of the user's speech-to-text jobs; any other id (malformed, someone else's) reads as None."""
    try:
        job_id = uuid.UUID(str(job_id))
    except ValueError:
        return None
    return AsrJob.objects.filter(pk=job_id, user=user).first()


def _snippet(text: str, query: str) -> str:
    """About SNIPPET_CHARS of `text` around the first case-insensitive match of `query`."""
    at = text.casefold().find(query.casefold())
    if at < 0 or len(text) <= SNIPPET_CHARS:
        return text[:SNIPPET_CHARS]
    start = max(0, min(at - (SNIPPET_CHARS - len(query)) // 2, len(text) - SNIPPET_CHARS))
    piece = text[start : start + SNIPPET_CHARS]
    return ("…" if start else "") + piece + ("…" if start + SNIPPET_CHARS < len(text) else "")


# --- a client's history (OpenAI clients re-send the whole conversation every call) ---------------


def _said(text: str) -> str:
    """Text as compared with a client's copy of it: clients trim and re-wrap whitespace."""
    return " ".join(text.split())


def _history_held(session: ChatSession, history: list[tuple[str, str]]) -> int | None:
    """How many of `history` (normalised) the session already holds, as its opening messages; None
    when the session's messages are not the start of `history`. The session's greeting may be left
    out by the client (clients that never showed it)."""
    rows = (
        Message.objects.filter(session=session)
        .exclude(status__in=[Message.Status.REPLACED, Message.Status.FAILED])
        .exclude(content="")
        .order_by("created_at")
        .values_list("role", "content")[: len(history) + 2]
    )
    saved = [(role, _said(content)) for role, content in rows]
    if saved and saved[0][0] == Message.Role.ASSISTANT and history[:1] != saved[:1]:
        saved = saved[1:]  # the greeting, which this client does not show
    if len(saved) > len(history) or history[: len(saved)] != saved:
        return None
    return len(saved)


def session_matching_history(*, user, character, history) -> tuple[ChatSession, int] | None:
    """The user's live session with `character` that a client's `history` ((role, content) pairs,
    oldest first, without the new line) continues, with how many of those messages it already holds.

    A session continues it when what the session has shown (messages neither replaced, failed nor
    empty; its greeting may be missing from the client's copy) is the start of `history`, whitespace
    aside. Of the user's latest HISTORY_MATCH_SESSIONS sessions with the character, the one holding
    the most of `history` wins, then the most recently active. None when none does.
    """
    history = [(role, _said(content)) for role, content in history]
    sessions = ChatSession.objects.filter(user=user, character=character, deleted_at__isnull=True).order_by(
        "-updated_at"
    )[:HISTORY_MATCH_SESSIONS]
    best: tuple[ChatSession, int] | None = None
    for session in sessions:
        held = _history_held(session, history)
        if held is not None and (best is None or held > best[1]):
            best = (session, held)
    return best


def session_history_held(*, session: ChatSession, history) -> int | None:
    """How many of a client's `history` messages `session` already holds (see session_matching_history)."""
    return _history_held(session, [(role, _said(content)) for role, content in history])
