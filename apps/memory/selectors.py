"""Reads: the active index, a user's memories, and retrieval for a turn."""

import functools
import logging
import time
import uuid

from asgiref.sync import async_to_sync, sync_to_async
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connections, transaction
from django.db.models import Count, Max, Q, QuerySet

from apps.characters.models import Character
from apps.core import sql
from apps.core.errors import AppError
from apps.core.events import queue_and_wait
from apps.core.metrics import RETRIEVAL, stage_observe
from apps.memory import index as vector_index
from apps.memory.embedding import embedder
from apps.memory.models import EmbeddingIndex, Job, Memory
from apps.realtime.protocol import ErrorCode

log = logging.getLogger(__name__)


def collection_name(model: str, version: int) -> str:
    slug = "".join(c if c.isalnum() else "-" for c in model.rsplit("/", 1)[-1].lower()).strip("-")[:60] or "model"
    return f"memories-v{version}-{slug}"


def index_active() -> EmbeddingIndex:
    """The index retrieval reads; the first one (EMBED_MODEL, version 1) is made on first use.

    Every turn's recall reads it, so in SQL (apps.core.sql): the ORM compiled it for longer than it ran."""
    connection = connections[EmbeddingIndex.objects.db]
    rows = sql.fetch(connection, _index_active_sql(connection.alias), [EmbeddingIndex.State.ACTIVE.value])
    index = sql.instance(EmbeddingIndex, rows[0], 0, connection) if rows else None  # one at most
    if index is not None:
        return index
    try:
        with transaction.atomic():
            if not EmbeddingIndex.objects.exists():
                return EmbeddingIndex.objects.create(
                    model=settings.EMBED_MODEL,
                    version=1,
                    collection=collection_name(settings.EMBED_MODEL, 1),
                    state=EmbeddingIndex.State.ACTIVE,
                )
    except IntegrityError:  # another process made it first
        pass
    return EmbeddingIndex.objects.get(state=EmbeddingIndex.State.ACTIVE)


def indexes_writable() -> list[EmbeddingIndex]:
    """Every index a memory's vector must be written to: the active one and any being built."""
    index_active()
    return list(EmbeddingIndex.objects.exclude(state=EmbeddingIndex.State.RETIRED).order_by("version"))


def memories_of(*, user_id, character_id=None, limit: int = 100) -> list[Memory]:
    rows = Memory.objects.filter(user_id=user_id).select_related("character")
    if character_id is not None:
        rows = rows.filter(character_id=character_id)
    return list(rows.order_by("-updated_at")[:limit])


def memories_list(*, user_id, character_id=None) -> QuerySet[Memory]:
    """The user's memories (of one character, if given), newest first: a query to page through."""
    rows = Memory.objects.filter(user_id=user_id).select_related("character")
    if character_id is not None:
        rows = rows.filter(character_id=character_id)
    return rows.order_by("-created_at", "-pk")


def memories_newest(*, user_id, character_id) -> QuerySet[Memory]:
    """The user's memories of one character, newest first (a query to page through)."""
    return Memory.objects.filter(user_id=user_id, character_id=character_id).order_by("-created_at", "-pk")


def memory_characters(*, user_id) -> list[Character]:
    """The characters the user has memories with, the most recently remembered first; each with
    `memory_count` and `newest_memory_at`."""
    rows = Character.objects.filter(memories__user_id=user_id).annotate(
        memory_count=Count("memories"), newest_memory_at=Max("memories__created_at")
    )
    return list(rows.order_by("-newest_memory_at", "pk"))


def memory_character_get(*, user_id, slug: str) -> Character | None:
    """A character whose memories of the user may be shown: a published one, or one with memories of them."""
    if not isinstance(slug, str) or not slug or "\x00" in slug:  # PostgreSQL text holds no NUL
        return None
    visible = Q(is_published=True) | Q(pk__in=Memory.objects.filter(user_id=user_id).values("character_id"))
    return Character.objects.filter(visible, slug=slug).first()


def memory_get_for_user(*, user_id, memory_id) -> Memory | None:
    """One of the user's memories; any other id (malformed, someone else's) reads as None."""
    try:
        pk = uuid.UUID(str(memory_id))
    except ValueError:
        return None
    return Memory.objects.select_related("character").filter(pk=pk, user_id=user_id).first()


class MemoryIndexUnavailable(AppError):
    """The vector index (or its model) could not answer."""

    def __init__(self, message: str):
        super().__init__(ErrorCode.MEMORY_UNAVAILABLE, message)


def memories_search(
    *,
    user_id,
    character_id,
    query: str,
    k: int,
    timings: dict | None = None,
    with_character: bool = True,
    min_similarity: float | None = None,
) -> list[tuple[Memory, float]]:
    """The `k` memories of this user and character nearest `query`, best first, with their similarity.

    Always this user's only: the index filters by owner and the rows are read back by owner too.
    `timings`, if given, receives the stages in ms (embed, index query). Without `with_character` the
    rows come without their character's (a turn's recall has it; joining its 25 columns cost more
    than reading the rows). With `min_similarity`, hits below it are dropped before their rows are
    read (none left: no query).
    """
    timings = {} if timings is None else timings
    index, remembered = _index_and_owner(user_id=user_id, character_id=character_id)
    if not remembered:  # nothing to search (every new user's turns): no query embedding, no index
        return []
    try:
        started = time.monotonic()
        vector = embedder(index.model).encode_query(query)
        embedded = time.monotonic()
        hits = vector_index.query(index.collection, vector, user_id=user_id, character_id=character_id, k=k)
        timings["memory_embed_ms"] = round((embedded - started) * 1000, 1)
        timings["memory_index_ms"] = round((time.monotonic() - embedded) * 1000, 1)
        stage_observe(RETRIEVAL, engine=index.model.rstrip("/").rsplit("/", 1)[-1], seconds=time.monotonic() - started)
    except Exception as exc:  # noqa: BLE001 - Chroma unreachable, a model that will not load...
        log.warning("memory search failed: %r", exc)
        raise MemoryIndexUnavailable(f"The memory index could not be searched ({exc.__class__.__name__}).") from exc
    if min_similarity is not None:
        hits = [(i, similarity) for i, similarity in hits if similarity >= min_similarity]
    return _owned_rows(user_id=user_id, character_id=character_id, hits=hits, with_character=with_character)


def _owned_rows(*, user_id, character_id, hits: list, with_character: bool = True) -> list[tuple[Memory, float]]:
    """(id, similarity) hits as the user's own rows, in the hits' order; an id whose row is gone (or
    not the user's) is skipped."""
    if with_character:
        owned = Memory.objects.filter(user_id=user_id, character_id=character_id).select_related("character")
        rows = {str(pk): m for pk, m in owned.order_by().in_bulk([i for i, _ in hits]).items()}  # a dict: no sort
    else:
        rows = {
            str(m.pk): m for m in _memories_owned(user_id=user_id, character_id=character_id, ids=[i for i, _ in hits])
        }
    return [(rows[i], s) for i, s in hits if i in rows]


def _memories_owned(*, user_id, character_id, ids: list[str]) -> list[Memory]:
    """Those of the memories `ids` that are this user's with this character (a turn's recall: in SQL,
    see apps.core.sql; the ORM compiled it for longer than it ran)."""
    connection = connections[Memory.objects.db]
    keys = []
    for memory_id in ids:
        try:
            keys.append(sql.key(Memory, memory_id, connection))
        except ValidationError:  # not one of ours: skipped, as a row that is gone
            continue
    if not keys:
        return []
    rows = sql.fetch(connection, _owned_sql(connection.alias, len(keys)), [user_id, character_id, *keys])
    return [sql.instance(Memory, row, 0, connection) for row in rows]


@functools.cache
def _owned_sql(alias: str, count: int) -> str:
    connection = connections[alias]

    def column(name: str) -> str:
        return sql.column(Memory, name, connection)

    return (
        f"SELECT {sql.columns(Memory, 'm', connection)} FROM {sql.table(Memory, connection)} m"
        f" WHERE m.{column('user')} = %s AND m.{column('character')} = %s"
        f" AND m.{column('id')} IN ({', '.join(['%s'] * count)})"
    )


def _index_and_owner(*, user_id, character_id) -> tuple[EmbeddingIndex, bool]:
    """The active index, and whether the user has any memories of the character: one query. (At 500
    sockets of users without memories, the query's embedding and Chroma's failing collection lookup
    were a fifth of the llm worker's GIL time, and the embedding 50-120 ms of each turn's wait.)"""
    connection = connections[EmbeddingIndex.objects.db]
    params = [user_id, character_id, EmbeddingIndex.State.ACTIVE.value]
    rows = sql.fetch(connection, _index_active_sql(connection.alias, owner=True), params)
    if rows:
        return sql.instance(EmbeddingIndex, rows[0], 0, connection), bool(rows[0][-1])
    return index_active(), Memory.objects.filter(user_id=user_id, character_id=character_id).exists()


@functools.cache
def _index_active_sql(alias: str, *, owner: bool = False) -> str:
    """The active index's row; with `owner`, then whether a user (%s) has memories of a character (%s)."""
    connection = connections[alias]
    exists = ""
    if owner:
        user, character = (sql.column(Memory, name, connection) for name in ("user", "character"))
        exists = f", EXISTS(SELECT 1 FROM {sql.table(Memory, connection)} m WHERE m.{user} = %s AND m.{character} = %s)"
    return (
        f"SELECT {sql.columns(EmbeddingIndex, 'i', connection)}{exists} FROM {sql.table(EmbeddingIndex, connection)} i"
        f" WHERE i.{sql.column(EmbeddingIndex, 'state', connection)} = %s LIMIT 1"
    )


MEMORY_SEARCH_TIMEOUT_S = 20.0  # as the REST search waits: a cold embedding worker loads its model first


def memories_search_by_worker(
    *, user_id, character_id, query: str, k: int, timeout: float = MEMORY_SEARCH_TIMEOUT_S
) -> list[tuple[Memory, float]]:
    """`memories_search` run by the embed queue's job (the process holding the model), waited for here.

    For interfaces without a socket to receive the answer on (the web pages): in the scaled mode the
    web process loads no model (the `embed` worker has it); in the embedded mode the job runs in this
    process's task threads, as every job there. Raises AppError: `memory_timeout` when no worker
    answered in time, `memory_unavailable` (or the job's own code) when the index could not be searched.
    """
    try:
        answer = async_to_sync(queue_and_wait)(
            "workers.embed.tasks.memory_search", timeout, user_id=user_id, character_id=character_id, query=query, k=k
        )
    except TimeoutError:
        raise AppError(ErrorCode.MEMORY_TIMEOUT, "No embedding worker answered in time; try again.") from None
    return _owned_hits(user_id=user_id, character_id=character_id, answer=answer)


async def amemories_search_by_worker(
    *, user_id, character_id, query: str, k: int, timeout: float = MEMORY_SEARCH_TIMEOUT_S
) -> list[tuple[Memory, float]]:
    """`memories_search_by_worker` for async views: the wait holds no thread."""
    try:
        answer = await queue_and_wait(
            "workers.embed.tasks.memory_search", timeout, user_id=user_id, character_id=character_id, query=query, k=k
        )
    except TimeoutError:
        raise AppError(ErrorCode.MEMORY_TIMEOUT, "No embedding worker answered in time; try again.") from None
    return await sync_to_async(_owned_hits)(user_id=user_id, character_id=character_id, answer=answer)


def _owned_hits(*, user_id, character_id, answer: dict) -> list[tuple[Memory, float]]:
    """The memory search job's answer as the user's own rows, best first; AppError for its error."""
    if answer.get("error"):
        raise AppError(answer["error"]["code"], answer["error"]["message"])
    hits = [(item["id"], item["similarity"]) for item in answer.get("items") or []]
    return _owned_rows(user_id=user_id, character_id=character_id, hits=hits)  # deleted since the job read it: skipped


def memories_recall(*, user_id, character_id, query: str) -> tuple[list[Memory], dict]:
    """Memories for a turn's prompt (similar enough, then weighted by importance) and timings.

    Retrieval must not break a turn: if the index is unreachable the reply goes on without memories.
    """
    started, timings = time.monotonic(), {}
    try:
        hits = memories_search(
            user_id=user_id,
            character_id=character_id,
            query=query,
            k=settings.MEMORY_TOP_K,
            timings=timings,
            with_character=False,
            min_similarity=settings.MEMORY_MIN_SIMILARITY,  # off topic: not worth reading
        )
    except MemoryIndexUnavailable as exc:
        return [], {"memory_error": str(exc)}
    hits = [(m, s + 0.1 * m.importance) for m, s in hits]
    hits.sort(key=lambda hit: -hit[1])
    return [m for m, _ in hits], {**timings, "memory_ms": round((time.monotonic() - started) * 1000, 1)}


def job_running() -> Job | None:
    return Job.objects.filter(status=Job.Status.RUNNING).select_related("index").first()


def memory_item(memory: Memory, similarity: float | None = None) -> dict:
    """A memory as clients see it (socket `memories` items, REST)."""
    return {
        "id": str(memory.pk),
        "text": memory.text,
        "kind": memory.kind,
        "importance": memory.importance,
        "character": memory.character.slug,
        "created_at": memory.created_at.isoformat(),
        "similarity": None if similarity is None else round(similarity, 4),
    }
