"""Reads: the active index, a user's memories, and retrieval for a turn."""

import logging
import time

from django.conf import settings
from django.db import IntegrityError, transaction

from apps.core.errors import AppError
from apps.memory import index as vector_index
from apps.memory.embedding import embedder
from apps.memory.models import EmbeddingIndex, Job, Memory
from apps.realtime.protocol import ErrorCode

log = logging.getLogger(__name__)


def collection_name(model: str, version: int) -> str:
    slug = "".join(c if c.isalnum() else "-" for c in model.rsplit("/", 1)[-1].lower()).strip("-")[:60] or "model"
    return f"memories-v{version}-{slug}"


def index_active() -> EmbeddingIndex:
    """The index retrieval reads; the first one (EMBED_MODEL, version 1) is made on first use."""
    index = EmbeddingIndex.objects.filter(state=EmbeddingIndex.State.ACTIVE).first()
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


class MemoryIndexUnavailable(AppError):
    """The vector index (or its model) could not answer."""

    def __init__(self, message: str):
        super().__init__(ErrorCode.MEMORY_UNAVAILABLE, message)


def memories_search(
    *, user_id, character_id, query: str, k: int, timings: dict | None = None
) -> list[tuple[Memory, float]]:
    """The `k` memories of this user and character nearest `query`, best first, with their similarity.

    Always this user's only: the index filters by owner and the rows are read back by owner too.
    `timings`, if given, receives the stages in ms (embed, index query).
    """
    timings = {} if timings is None else timings
    index = index_active()
    try:
        started = time.monotonic()
        vector = embedder(index.model).encode_query(query)
        embedded = time.monotonic()
        hits = vector_index.query(index.collection, vector, user_id=user_id, character_id=character_id, k=k)
        timings["memory_embed_ms"] = round((embedded - started) * 1000, 1)
        timings["memory_index_ms"] = round((time.monotonic() - embedded) * 1000, 1)
    except Exception as exc:  # noqa: BLE001 - Chroma unreachable, a model that will not load...
        log.warning("memory search failed: %r", exc)
        raise MemoryIndexUnavailable(f"The memory index could not be searched ({exc.__class__.__name__}).") from exc
    owned = Memory.objects.filter(user_id=user_id, character_id=character_id).select_related("character")
    rows = {str(pk): m for pk, m in owned.in_bulk([i for i, _ in hits]).items()}
    return [(rows[i], s) for i, s in hits if i in rows]  # a vector whose row was deleted is skipped


def memories_recall(*, user_id, character_id, query: str) -> tuple[list[Memory], dict]:
    """Memories for a turn's prompt (similar enough, then weighted by importance) and timings.

    Retrieval must not break a turn: if the index is unreachable the reply goes on without memories.
    """
    started, timings = time.monotonic(), {}
    try:
        hits = memories_search(
            user_id=user_id, character_id=character_id, query=query, k=settings.MEMORY_TOP_K, timings=timings
        )
    except MemoryIndexUnavailable as exc:
        return [], {"memory_error": str(exc)}
    hits = [(m, s + 0.1 * m.importance) for m, s in hits if s >= settings.MEMORY_MIN_SIMILARITY]
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
