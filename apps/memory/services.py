"""Writes: remembering (with merging), editing and deleting memories, keeping every writable index
in step, and the re-embedding job (start, chunks, finish with an atomic switch, resume, cancel)."""

import logging
import uuid
from datetime import timedelta

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from apps.conversations.models import ChatSession, Message
from apps.core.errors import AppError
from apps.memory import index as vector_index
from apps.memory.embedding import embedder, embedder_check
from apps.memory.models import EmbeddingIndex, ForgottenMessage, Job, JobChunk, Memory
from apps.memory.selectors import collection_name, index_active, indexes_writable, job_running
from apps.realtime.protocol import ErrorCode

log = logging.getLogger(__name__)


class MemoryRequestError(AppError):
    """A request about memories that cannot be done; `code` is stable for clients."""


def _owned(memory: Memory) -> vector_index.Owned:
    return vector_index.Owned(str(memory.pk), memory.user_id, memory.character_id, memory.kind)


def memories_embed(memories: list[Memory], *, indexes: list[EmbeddingIndex] | None = None, vectors=None) -> None:
    """Write the vectors of `memories` into every writable index (upserts), and note the newest on the rows.

    `vectors`, when given, were made with the active index's model and are reused for it.
    """
    if not memories:
        return
    indexes = indexes if indexes is not None else indexes_writable()
    newest = None
    for idx in indexes:
        reuse = vectors is not None and idx.state == EmbeddingIndex.State.ACTIVE
        vecs = vectors if reuse else embedder(idx.model).encode([m.text for m in memories])
        vector_index.upsert(idx.collection, [_owned(m) for m in memories], vecs)
        newest = idx if newest is None or idx.version > newest.version else newest
    Memory.objects.filter(pk__in=[m.pk for m in memories]).update(
        embedding_model=newest.model, embedding_version=newest.version, embedded_at=timezone.now()
    )


def memory_remember(
    *, user_id, character_id, text: str, kind: str, importance: float, source_message_ids: list[str], session_id=None
) -> Memory:
    """Store what is worth remembering, merged into a near-duplicate the user already has.

    A summary replaces its session's earlier summary. Otherwise the nearest memory of this user
    and character (same kind of statement) at MEMORY_MERGE_SIMILARITY or above takes the new
    wording (newer is truer: "I live in Porto" after "I live in Lisbon"), the higher importance and
    both sources.
    """
    from django.conf import settings

    active = index_active()
    vector = embedder(active.model).encode([text])
    existing = None
    if session_id is not None and kind == Memory.Kind.SUMMARY:
        existing = Memory.objects.filter(session_id=session_id, kind=kind).first()
    if existing is None:
        existing = Memory.objects.filter(user_id=user_id, character_id=character_id, text__iexact=text).first()
    if existing is None:
        hits = vector_index.query(active.collection, vector[0], user_id=user_id, character_id=character_id, k=1)
        if hits and hits[0][1] >= settings.MEMORY_MERGE_SIMILARITY:
            existing = Memory.objects.filter(pk=hits[0][0], user_id=user_id, kind=kind).first()
    with transaction.atomic():
        if session_id is not None and kind == Memory.Kind.SUMMARY:  # two summaries of a session at once: one row
            list(ChatSession.objects.select_for_update().filter(pk=session_id).values_list("pk"))
            existing = Memory.objects.filter(session_id=session_id, kind=kind).first() or existing
        if existing is not None:
            memory = Memory.objects.select_for_update().get(pk=existing.pk)
            memory.text, memory.importance = text, max(memory.importance, importance)
            memory.source_message_ids = list(dict.fromkeys(memory.source_message_ids + source_message_ids))
            memory.save(update_fields=["text", "importance", "source_message_ids", "updated_at"])
        else:
            memory = Memory.objects.create(
                user_id=user_id,
                character_id=character_id,
                text=text,
                kind=kind,
                importance=importance,
                source_message_ids=source_message_ids,
                session_id=session_id,
            )
    memories_embed([memory], vectors=vector)
    return memory


def memory_save(*, memory: Memory) -> Memory:
    """Save an edited memory (the admin); its text is re-embedded everywhere by a job on queue `embed`
    (the web process holds no model)."""
    from workers.dispatch import enqueue

    with transaction.atomic():
        memory.save()
        transaction.on_commit(lambda: enqueue("workers.embed.tasks.memories_embed", memory_ids=[str(memory.pk)]))
    return memory


def memory_delete(*, user_id, memory_id) -> None:
    """Delete one of the user's memories, from the database and every index, at once."""
    try:
        memory_uuid = uuid.UUID(str(memory_id))
    except ValueError:
        raise MemoryRequestError(ErrorCode.INVALID_MEMORY_ID, "A memory id is a UUID.") from None
    memory = Memory.objects.filter(pk=memory_uuid, user_id=user_id).first()
    if memory is None:
        raise MemoryRequestError(ErrorCode.MEMORY_NOT_FOUND, "You have no memory with that id.")
    memory_delete_any(memory)


def memory_delete_any(*memories: Memory) -> None:
    """Delete memories (any owner: staff) from the database, then from every index.

    What they came from is forgotten with them: the turns of their source messages are left out of
    every later session summary, and a summary already written from those turns goes too (the
    idle-session job writes it again from what is left). The sessions' rows are locked meanwhile,
    as `session_summary_save` locks them, so a summary being written at the same time cannot slip
    the fact back in.
    """
    forgotten = _turns_of(source for m in memories for source in m.source_message_ids)
    with transaction.atomic():
        sessions = set(Message.objects.filter(pk__in=forgotten).values_list("session_id", flat=True))
        list(ChatSession.objects.select_for_update().filter(pk__in=sessions).order_by("pk").values_list("pk"))
        ForgottenMessage.objects.bulk_create(
            [ForgottenMessage(message_id=pk) for pk in forgotten], ignore_conflicts=True
        )
        ids = {str(m.pk) for m in memories}
        stale = [
            summary
            for summary in Memory.objects.filter(kind=Memory.Kind.SUMMARY, session_id__in=sessions)
            if str(summary.pk) not in ids and {str(pk) for pk in forgotten} & set(summary.source_message_ids)
        ]
        ChatSession.objects.filter(pk__in=[s.session_id for s in stale]).update(summarized_at=None)
        gone = [*memories, *stale]
        Memory.objects.filter(pk__in=[m.pk for m in gone]).delete()
    owned = [_owned(m) for m in gone]
    for idx in EmbeddingIndex.objects.exclude(state=EmbeddingIndex.State.RETIRED):
        vector_index.delete(idx.collection, owned)


def _turns_of(message_ids) -> list:
    """The ids of every message in the turns holding these messages: a user's message and the replies to it."""
    valid = []
    for message_id in message_ids:
        try:
            valid.append(uuid.UUID(str(message_id)))
        except ValueError:
            continue
    sources = set(Message.objects.filter(pk__in=valid).values_list("pk", flat=True))
    sessions = set(Message.objects.filter(pk__in=sources).values_list("session_id", flat=True))
    turns = []
    for session_id in sessions:
        turn: list = []
        rows = Message.objects.filter(session_id=session_id).order_by("created_at").values_list("pk", "role")
        for pk, role in rows.iterator():
            if role == Message.Role.USER and turn:  # a user's message opens the next turn
                turns.append(turn)
                turn = []
            turn.append(pk)
        turns.append(turn)
    return [pk for turn in turns if sources.intersection(turn) for pk in turn]


def session_summary_save(*, session: ChatSession, text: str, source_message_ids: list[str], read_at) -> Memory | None:
    """Keep the summary of a session, written from these messages, unless one of them was forgotten
    while it was being written (a memory from them was deleted): then it is written again later."""
    with transaction.atomic():  # the lock memory_delete_any takes
        list(ChatSession.objects.select_for_update().filter(pk=session.pk).values_list("pk"))
        if ForgottenMessage.objects.filter(pk__in=source_message_ids).exists():
            ChatSession.objects.filter(pk=session.pk).update(summarized_at=None)
            return None
        memory = memory_remember(
            user_id=session.user_id,
            character_id=session.character_id,
            text=f"Summary of an earlier conversation: {text}",
            kind=Memory.Kind.SUMMARY,
            importance=0.5,
            source_message_ids=source_message_ids,
            session_id=session.pk,
        )
        ChatSession.objects.filter(pk=session.pk).update(summarized_at=read_at)
    return memory


# --- re-embedding ---------------------------------------------------------------------------------


def reembed_start(*, model: str, user=None, chunk_size: int = 500) -> Job:
    """Plan a job that embeds every memory with `model` into a new index beside the active one.

    Chunks are slices of memory ids; each is one task on queue `batch`. One job at a time.
    """
    embedder_check(model)  # a model nobody can load fails here, not in a hundred tasks
    with transaction.atomic():
        if job_running() is not None:
            raise MemoryRequestError(
                ErrorCode.JOB_RUNNING, "A re-embedding job is already running; resume or cancel it."
            )
        index_active()
        version = (EmbeddingIndex.objects.order_by("-version").values_list("version", flat=True).first() or 0) + 1
        index = EmbeddingIndex.objects.create(model=model, version=version, collection=collection_name(model, version))
        job = Job.objects.create(index=index, created_by=user)
        # In owner order, so a chunk writes to few of the index's per-owner collections.
        rows = Memory.objects.order_by("user_id", "character_id", "pk").values_list("pk", flat=True)
        chunks, batch = [], []
        for memory_id in rows.iterator(chunk_size=5000):
            batch.append(str(memory_id))
            if len(batch) == chunk_size:
                chunks.append(JobChunk(job=job, number=len(chunks), memory_ids=batch, size=len(batch)))
                batch = []
        if batch:
            chunks.append(JobChunk(job=job, number=len(chunks), memory_ids=batch, size=len(batch)))
        JobChunk.objects.bulk_create(chunks, batch_size=1000)
        job.total, job.chunks_total = sum(c.size for c in chunks), len(chunks)
        job.save(update_fields=["total", "chunks_total"])
        transaction.on_commit(lambda: _enqueue_chunks(job))
    return job


def _enqueue_chunks(job: Job) -> None:
    from workers.dispatch import enqueue

    numbers = list(job.chunks.filter(done=False).order_by("number").values_list("number", flat=True))
    for number in numbers:
        enqueue("workers.embed.tasks.reembed_chunk", job_id=job.pk, number=number)
    if not numbers:
        reembed_finish(job_id=job.pk)


def reembed_resume(*, job_id) -> Job:
    """Queue again every chunk not done yet (after a crash or a killed worker). Safe to repeat."""
    job = _job(job_id)
    if job.status not in (Job.Status.RUNNING, Job.Status.FAILED):
        raise MemoryRequestError(ErrorCode.JOB_NOT_RESUMABLE, f"The job is {job.status}.")
    Job.objects.filter(pk=job.pk).update(status=Job.Status.RUNNING, error="")
    job.refresh_from_db()
    transaction.on_commit(lambda: _enqueue_chunks(job))
    return job


def reembed_cancel(*, job_id) -> Job:
    """Stop a job: chunks still queued do nothing, the half-built index is dropped, retrieval is untouched."""
    job = _job(job_id)
    with transaction.atomic():
        updated = Job.objects.filter(pk=job.pk, status__in=[Job.Status.RUNNING, Job.Status.FAILED]).update(
            status=Job.Status.CANCELLED, finished_at=timezone.now()
        )
        if not updated:
            raise MemoryRequestError(ErrorCode.JOB_NOT_RUNNING, f"The job is {job.status}.")
        EmbeddingIndex.objects.filter(pk=job.index_id, state=EmbeddingIndex.State.BUILDING).update(
            state=EmbeddingIndex.State.RETIRED, retired_at=timezone.now()
        )
    vector_index.drop(job.index.collection)
    job.refresh_from_db()
    return job


RETIRED_GRACE = timedelta(minutes=10)  # longer than any task's time limit: nothing still writes to a retired index


def indexes_retired_drop(*, index_ids=None) -> tuple[list[EmbeddingIndex], list[EmbeddingIndex]]:
    """Delete the collections of retired indexes (their rows stay, as history); the disk they held is freed.

    A switch keeps the old index so searches and writes already running finish against it; one
    retired less than RETIRED_GRACE ago is left for later. `index_ids` limits it to those (active or
    building ones are never touched). Returns (dropped, too recent). Running it twice is harmless.
    """
    retired = EmbeddingIndex.objects.filter(state=EmbeddingIndex.State.RETIRED).order_by("version")
    retired = list(retired if index_ids is None else retired.filter(pk__in=index_ids))
    since = timezone.now() - RETIRED_GRACE
    dropped = [i for i in retired if i.retired_at is None or i.retired_at <= since]
    for index in dropped:
        vector_index.drop(index.collection)
    return dropped, [i for i in retired if i not in dropped]


def _job(job_id) -> Job:
    job = Job.objects.select_related("index").filter(pk=job_id).first()
    if job is None:
        raise MemoryRequestError(ErrorCode.JOB_NOT_FOUND, f"No job {job_id}.")
    return job


def reembed_chunk_run(*, job_id, number: int) -> None:
    """Embed one chunk into the job's index; mark it done once. Running it twice writes the same vectors.

    A job cancelled while the chunk ran gets no vectors from it: the cancel's drop may have come
    before this upsert, so the chunk drops the index again (a redelivered chunk of a cancelled job too).
    """
    job = Job.objects.select_related("index").get(pk=job_id)
    if job.status == Job.Status.CANCELLED:
        vector_index.drop(job.index.collection)
    if job.status != Job.Status.RUNNING:
        return
    chunk = JobChunk.objects.get(job=job, number=number)
    if chunk.done:
        return
    memories = list(Memory.objects.filter(pk__in=chunk.memory_ids))  # one deleted meanwhile is just gone
    vectors = embedder(job.index.model).encode([m.text for m in memories])
    try:
        vector_index.upsert(job.index.collection, [_owned(m) for m in memories], vectors)
        with transaction.atomic():  # the job row's lock orders this against a cancel
            if Job.objects.select_for_update().get(
                pk=job.pk
            ).status == Job.Status.CANCELLED or not JobChunk.objects.filter(pk=chunk.pk, done=False).update(done=True):
                return  # cancelled meanwhile, or another delivery of this task finished it first
            Job.objects.filter(pk=job.pk).update(done=F("done") + chunk.size)
            Memory.objects.filter(pk__in=[m.pk for m in memories]).update(
                embedding_model=job.index.model, embedding_version=job.index.version, embedded_at=timezone.now()
            )
    finally:  # cancelled meanwhile, even if the upsert failed: the cancel's drop may have come before it
        if Job.objects.filter(pk=job.pk, status=Job.Status.CANCELLED).exists():
            vector_index.drop(job.index.collection)
    if not JobChunk.objects.filter(job=job, done=False).exists():
        reembed_finish(job_id=job.pk)


def reembed_finish(*, job_id) -> None:
    """Catch up on memories the chunks did not hold, then make the new index active in one transaction."""
    with transaction.atomic():
        job = Job.objects.select_for_update().select_related("index").get(pk=job_id)
        if job.status != Job.Status.RUNNING:
            return
        index = job.index
        # Written while the chunks were planned (the write path found no building index yet).
        stragglers = list(
            Memory.objects.exclude(embedding_version=index.version).filter(created_at__gte=job.created_at)
        )
        if stragglers:
            memories_embed(stragglers, indexes=[index])
        now = timezone.now()
        EmbeddingIndex.objects.filter(state=EmbeddingIndex.State.ACTIVE).update(
            state=EmbeddingIndex.State.RETIRED, retired_at=now
        )
        EmbeddingIndex.objects.filter(pk=index.pk).update(state=EmbeddingIndex.State.ACTIVE, activated_at=now)
        Job.objects.filter(pk=job.pk).update(status=Job.Status.COMPLETE, finished_at=timezone.now())
    log.info("re-embedding job %s complete: %s is active", job.pk, index)


def reembed_fail(*, job_id, error: str) -> None:
    Job.objects.filter(pk=job_id, status=Job.Status.RUNNING).update(status=Job.Status.FAILED, error=error[:2000])
