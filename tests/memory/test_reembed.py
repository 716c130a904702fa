"""Re-embedding every memory into a new index while people chat: progress, atomic switch, resume
after a killed worker, cancel. Real batch/embed workers (MiniLM) and the Chroma server."""

import threading
import time
from datetime import timedelta

import numpy as np
import pytest
from django.core.management import call_command
from django.utils import timezone

from apps.memory import index as vector_index
from apps.memory import services
from apps.memory.models import EmbeddingIndex, Job, JobChunk, Memory
from apps.memory.selectors import index_active, memories_recall
from tests import stack
from tests.conftest import LOG_DIR
from tests.memories import remember
from workers.embed.engine import DEFAULT_MODEL, get_embedder

pytestmark = pytest.mark.django_db(transaction=True)

TOPICS = ["chess", "jazz", "hiking", "baking", "astronomy", "painting", "cycling", "gardening", "poetry", "surfing"]


def seed(user, character, n: int) -> list[Memory]:
    """`n` memories written the way the app writes them (rows, then vectors into the active index)."""
    rows = Memory.objects.bulk_create(
        Memory(
            user=user,
            character=character,
            kind="preference",
            importance=0.5,
            text=f"The user said: I love {TOPICS[i % len(TOPICS)]}, note {i}.",
        )
        for i in range(n)
    )
    for start in range(0, n, 256):
        services.memories_embed(rows[start : start + 256])
    return rows


def wait_for(condition, timeout: float = 120, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def assert_each_memory_once_in(index: EmbeddingIndex):
    ids = {str(pk) for pk in Memory.objects.values_list("pk", flat=True)}
    stored = vector_index.ids(index.collection)
    assert len(stored) == len(set(stored)) == len(ids) and set(stored) == ids
    assert not Memory.objects.exclude(embedding_version=index.version).exists()


@pytest.mark.usefixtures("memory_worker")
def test_reembed_while_turns_retrieve_then_switch_atomically(user, character):
    seed(user, character, 1200)
    old = index_active()
    results, stop = [], threading.Event()

    def chat():  # a turn's retrieval, over and over, while the job runs and switches
        from django.db import connection

        try:
            while not stop.is_set():
                version = index_active().version  # the index the recall starts on
                found, timings = memories_recall(user_id=user.pk, character_id=character.pk, query="a game of chess")
                results.append((version, [m.text for m in found], timings))
        finally:
            connection.close()

    chatter = threading.Thread(target=chat)
    chatter.start()
    try:
        job = services.reembed_start(model=DEFAULT_MODEL, chunk_size=100)
        assert job.chunks_total == 12 and job.index.state == "building"
        written_during = remember(user, character, "The user said: I moved to Kyoto last spring.")
        wait_for(lambda: Job.objects.get(pk=job.pk).status == "complete", what="the job")
        switched_to = EmbeddingIndex.objects.get(pk=Job.objects.get(pk=job.pk).index_id).version
        wait_for(lambda: any(v == switched_to for v, _, _ in results[:]), what="a turn on the new index")
    finally:
        stop.set()
        chatter.join()
    job.refresh_from_db()
    new = EmbeddingIndex.objects.get(pk=job.index_id)
    assert (job.done, job.total) == (1200, 1200) and job.finished_at is not None
    assert new.state == "active" and EmbeddingIndex.objects.get(pk=old.pk).state == "retired"
    assert {v for v, _, _ in results} == {old.version, new.version}  # turns ran before and after the switch
    assert all(texts and "chess" in texts[0] and "memory_error" not in t for _, texts, t in results), results[-3:]
    assert_each_memory_once_in(new)  # including the one written during the job

    found = []

    def kyoto_recalled():  # Chroma's index may take a moment to serve a vector it has stored
        found[:] = memories_recall(user_id=user.pk, character_id=character.pk, query="Which city did I move to?")[0]
        return written_during.pk in [m.pk for m in found]

    try:
        wait_for(kyoto_recalled, timeout=10, what="the memory written during the job to be recalled from the new index")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; recalled instead: {[m.text for m in found]}") from None


def test_killing_the_worker_mid_job_then_resuming_embeds_every_memory_exactly_once(user, character, live_env):
    seed(user, character, 3000)
    worker = stack.start_worker(
        queues="batch", env={**live_env, "EMBED_THREADS": "1"}, log_dir=LOG_DIR, name="worker-batch-doomed"
    )
    job = services.reembed_start(model=DEFAULT_MODEL, chunk_size=100)
    try:
        wait_for(lambda: 3 <= JobChunk.objects.filter(job=job, done=True).count(), what="some chunks")
        worker.popen.kill()  # SIGKILL mid-chunk: no chance to clean up
        worker.popen.wait()
        progress = Job.objects.get(pk=job.pk)
        assert progress.status == "running" and 0 < progress.done < progress.total
        assert index_active().pk != job.index_id  # retrieval never saw the half-built index
        call_command("reembed_memories", "--resume", str(job.pk), "--no-wait")
        worker = stack.start_worker(queues="batch", env=live_env, log_dir=LOG_DIR, name="worker-batch-resumed")
        wait_for(lambda: Job.objects.get(pk=job.pk).status == "complete", what="the resumed job")
    finally:
        worker.stop()
    job.refresh_from_db()
    assert (job.done, job.total) == (3000, 3000)  # no chunk counted twice
    assert JobChunk.objects.filter(job=job, done=False).count() == 0
    assert_each_memory_once_in(EmbeddingIndex.objects.get(pk=job.index_id))


def test_cancel_leaves_retrieval_on_the_old_index(user, character, monkeypatch):
    seed(user, character, 300)
    old = index_active()
    monkeypatch.setattr("workers.dispatch.enqueue", lambda name, **kwargs: None)  # chunks queued, none run
    job = services.reembed_start(model=DEFAULT_MODEL, chunk_size=100)
    with pytest.raises(services.MemoryRequestError) as exc:
        services.reembed_start(model=DEFAULT_MODEL)
    assert exc.value.code == "job_running"
    call_command("reembed_memories", "--cancel", str(job.pk))
    job.refresh_from_db()
    assert job.status == "cancelled" and EmbeddingIndex.objects.get(pk=job.index_id).state == "retired"
    assert index_active().pk == old.pk
    found, _ = memories_recall(user_id=user.pk, character_id=character.pk, query="chess")
    assert found and "chess" in found[0].text


def test_a_chunk_that_was_running_when_the_job_was_cancelled_leaves_nothing_behind(user, character, monkeypatch):
    seed(user, character, 30)
    monkeypatch.setattr("workers.dispatch.enqueue", lambda name, **kwargs: None)
    job = services.reembed_start(model=DEFAULT_MODEL, chunk_size=30)
    upsert = vector_index.upsert

    def cancelled_meanwhile(*args, **kwargs):  # the cancel (and its drop) lands while the chunk is embedding
        services.reembed_cancel(job_id=job.pk)
        upsert(*args, **kwargs)

    monkeypatch.setattr(vector_index, "upsert", cancelled_meanwhile)
    services.reembed_chunk_run(job_id=job.pk, number=0)
    assert vector_index.count(job.index.collection) == 0
    assert Job.objects.get(pk=job.pk).status == "cancelled" and not Memory.objects.filter(embedding_version=2).exists()
    # a worker killed mid-upsert left vectors; the chunk, delivered again, takes them away
    monkeypatch.setattr(vector_index, "upsert", upsert)
    services.memories_embed(list(Memory.objects.all()), indexes=[job.index])
    assert vector_index.count(job.index.collection) == 30
    services.reembed_chunk_run(job_id=job.pk, number=0)
    assert vector_index.count(job.index.collection) == 0


def test_dropping_retired_indexes_frees_them_and_leaves_retrieval_alone(admin_client, user, character, capsys):
    seed(user, character, 40)
    old = index_active()
    job = services.reembed_start(model=DEFAULT_MODEL, chunk_size=40)
    services.reembed_chunk_run(job_id=job.pk, number=0)
    wait_for(lambda: Job.objects.get(pk=job.pk).status == "complete", what="the job")
    assert vector_index.count(old.collection) == 40  # kept after the switch
    call_command("reembed_memories", "--drop-retired")  # too soon: writes begun before the switch may still land
    assert "kept" in capsys.readouterr().out and vector_index.count(old.collection) == 40
    EmbeddingIndex.objects.filter(pk=old.pk).update(retired_at=timezone.now() - timedelta(minutes=11))
    page = admin_client.post(
        "/admin/memory/embeddingindex/",
        {"action": "drop_vectors", "_selected_action": [old.pk, index_active().pk]},
        follow=True,
    ).content.decode()
    assert "Dropped the vectors of" in page and "1 index(es) left alone" in page
    assert vector_index.count(old.collection) == 0
    call_command("reembed_memories", "--drop-retired")  # again, from the command line: harmless
    assert f"dropped the vectors of {old.model} v{old.version}" in capsys.readouterr().out
    assert_each_memory_once_in(index_active())
    found, timings = memories_recall(user_id=user.pk, character_id=character.pk, query="Do I like jazz?")
    assert found and "memory_error" not in timings and EmbeddingIndex.objects.filter(pk=old.pk).exists()


def test_a_model_nobody_can_load_is_refused_before_anything_starts(user, character, tmp_path):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="No sentence-transformers model"):
        call_command("reembed_memories", "--model", str(tmp_path / "nothing-here"))
    assert not Job.objects.exists() and EmbeddingIndex.objects.count() <= 1


def test_another_local_model_directory_is_just_another_model(user, character, tmp_path):
    """A "new model" may be a local directory: the code does not care (here, a copy of MiniLM)."""
    import shutil

    from workers.embed.engine import model_dir

    copy = tmp_path / "minilm-copy"
    shutil.copytree(model_dir(DEFAULT_MODEL), copy)
    seed(user, character, 50)
    job = services.reembed_start(model=str(copy), chunk_size=20)
    for chunk in JobChunk.objects.filter(job=job).order_by("number"):  # the batch tasks' work, in this process
        services.reembed_chunk_run(job_id=job.pk, number=chunk.number)  # (a batch worker may take some too)
    wait_for(lambda: Job.objects.get(pk=job.pk).status == "complete", what="the job")
    assert index_active().model == str(copy) and index_active().collection.startswith("memories-v2-minilm-copy")
    a = get_embedder(str(copy)).encode(["hello"])[0]
    assert np.allclose(a, get_embedder(DEFAULT_MODEL).encode(["hello"])[0], atol=1e-5)
    assert_each_memory_once_in(index_active())
