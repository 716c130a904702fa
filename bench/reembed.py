"""Re-embedding 100,000 memories through the real queue and workers, against raw encode.

Starts PostgreSQL/Redis if needed, a fresh bench database, a Chroma server (`chroma run`) and
Celery workers on queue `batch` (one torch thread each), then:
  1. writes N synthetic memories (rows only),
  2. raw: `SentenceTransformer.encode` of the same texts in this process, one thread,
  3. job A: `reembed_memories` with one worker (this builds the index retrieval then uses),
  4. job B: the same with two workers,
  5. retrieval as a turn does it (embed the user's line, query the active index filtered by
     owner, read the rows) at N memories, and how many of the exact nearest memories the index
     returned (recall against numpy over the same stored vectors).

    .venv/bin/python bench/reembed.py [--memories 100000]
"""

import argparse
import os
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import LOG_DIR, pct, scaled_environment  # noqa: E402

TOPICS = [
    "chess",
    "jazz",
    "hiking",
    "baking",
    "astronomy",
    "painting",
    "cycling",
    "gardening",
    "poetry",
    "surfing",
    "sushi",
    "football",
    "opera",
    "knitting",
    "photography",
    "sailing",
    "pottery",
    "climbing",
    "tea",
    "cats",
]
PLACES = ["Lisbon", "Oslo", "Kyoto", "Lima", "Cairo", "Austin", "Porto", "Seoul", "Dublin", "Nairobi"]
PATTERNS = [
    "The user said: I really love {t} on weekends.",
    "The user said: I live in {p} with my sister.",
    "The user said: My favourite hobby is {t}, I started in {p}.",
    "The user said: I work as a teacher in {p}.",
    "The user said: I can't stand {t}.",
]


def texts(n: int, seed: int = 7) -> list[str]:
    rnd = random.Random(seed)
    return [rnd.choice(PATTERNS).format(t=rnd.choice(TOPICS), p=rnd.choice(PLACES)) + f" ({i})" for i in range(n)]


def machine_busy(since: tuple | None = None):
    """CPU the rest of the machine used: a mark, or (given a mark) cores busy outside this process since it."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    mark = ((sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK"), sum(os.times()[:2]), time.monotonic())
    if since is None:
        return mark
    return ((mark[0] - since[0]) - (mark[1] - since[1])) / (mark[2] - since[2])


def run_job(workers: int, env: dict, chunk_size: int) -> tuple[float, int]:
    """A re-embedding job with `workers` single-threaded batch workers; (seconds, memories)."""
    from apps.memory import services
    from apps.memory.models import Job
    from tests import stack
    from workers.embed.engine import DEFAULT_MODEL

    procs = [
        stack.start_worker(
            queues="batch",
            env={**env, "EMBED_THREADS": "1"},
            log_dir=LOG_DIR,
            name=f"bench-batch-{workers}-{i}",
            timeout=300,
        )
        for i in range(workers)
    ]
    try:
        started = time.perf_counter()
        job = services.reembed_start(model=DEFAULT_MODEL, chunk_size=chunk_size)
        shown = -1
        while True:
            job.refresh_from_db()
            if job.status != Job.Status.RUNNING:
                break
            if job.done // 10000 != shown:
                shown = job.done // 10000
                print(f"  {workers} worker(s): {job.done}/{job.total}", flush=True)
            time.sleep(0.25)
        elapsed = time.perf_counter() - started
        if job.status != Job.Status.COMPLETE:
            raise RuntimeError(f"job {job.pk} ended {job.status}: {job.error}")
        return elapsed, job.total
    finally:
        for proc in procs:
            proc.stop()


def index_recall(collection: str, users, character, embedder, queries: list[str]) -> float:
    """Share of each query's exact top-k (numpy over the owner's stored vectors) the index returned.
    Queries: the turn's questions, and 16 of each user's memories reworded (many near neighbours)."""
    import numpy as np
    from django.conf import settings

    from apps.memory import index as vector_index
    from apps.memory.models import Memory

    k, found, wanted = settings.MEMORY_TOP_K, 0, 0
    for user in users:
        ids, vectors = vector_index.owner_vectors(collection, user.pk, character.pk)
        own = Memory.objects.filter(user=user, character=character).values_list("text", flat=True)[:16]
        for query in queries + [
            text.replace("The user said: ", "Do you remember? ").rsplit(" (", 1)[0] for text in own
        ]:
            vector = embedder.encode_query(query)
            exact = {ids[i] for i in np.argsort(-(vectors @ vector))[:k]}
            hits = vector_index.query(collection, vector, user_id=user.pk, character_id=character.pk, k=k)
            found, wanted = found + len(exact & {i for i, _ in hits}), wanted + k
    return found / wanted


def main(args) -> None:
    from tests import stack

    env = scaled_environment(64)
    chroma_url = f"http://127.0.0.1:{stack.free_port()}"
    chroma_dir = LOG_DIR / "chroma"
    import shutil

    shutil.rmtree(chroma_dir, ignore_errors=True)
    chroma = stack.start_chroma(url=chroma_url, path=chroma_dir, log_dir=LOG_DIR)
    env = {**env, "CHROMA_URL": chroma_url}
    os.environ["CHROMA_URL"] = chroma_url
    import django

    django.setup()
    import torch
    from django.contrib.auth import get_user_model

    from apps.characters.models import Character
    from apps.memory.models import EmbeddingIndex, Job, Memory
    from apps.memory.selectors import index_active, memories_recall
    from workers.embed.engine import DEFAULT_MODEL, Embedder, get_embedder

    try:
        Job.objects.all().delete()  # the bench database outlives runs; the index (a new folder) does not
        EmbeddingIndex.objects.all().delete()
        Memory.objects.all().delete()
        character = Character.objects.get(slug="nova")
        users = [get_user_model().objects.get_or_create(username=f"bench-{i}")[0] for i in range(args.users)]
        corpus = texts(args.memories)
        Memory.objects.bulk_create(
            (
                Memory(user=users[i % len(users)], character=character, text=text, kind="fact")
                for i, text in enumerate(corpus)
            ),
            batch_size=5000,
        )
        print(f"{args.memories} memories of {len(users)} users; chunks of {args.chunk_size}")

        if not args.retrieval_only:
            torch.set_num_threads(1)
            embedder = Embedder(DEFAULT_MODEL, threads=1)
            embedder.encode(corpus[:256])  # warm up
            started = time.perf_counter()
            embedder.encode(corpus)
            raw_s = time.perf_counter() - started
            raw_rate = len(corpus) / raw_s
            print(f"raw encode, 1 thread, same texts: {raw_rate:.0f} memories/s ({raw_s:.1f} s)")

            one_s, n = run_job(1, env, args.chunk_size)
            one_rate = n / one_s
            print(f"job, 1 worker x 1 thread:  {one_rate:.0f} memories/s ({one_s:.1f} s)")
        two_s, n = run_job(2, env, args.chunk_size)
        two_rate = n / two_s
        print(f"job, 2 workers x 1 thread: {two_rate:.0f} memories/s ({two_s:.1f} s)")

        torch.set_num_threads(2)
        index = index_active()
        rnd, lat, stages = random.Random(3), [], {"memory_embed_ms": [], "memory_index_ms": []}
        queries = ["What do I like to do on weekends?", "Where do I live?", "What is my job?", "What can't I stand?"]
        warm = len(users)  # a worker that has served each user once holds their collection's handle
        busy = None
        for i in range(args.queries + warm):
            user = users[i] if i < warm else users[rnd.randrange(len(users))]
            if i == warm:
                busy = machine_busy()
            started = time.perf_counter()
            found, timings = memories_recall(user_id=user.pk, character_id=character.pk, query=rnd.choice(queries))
            if i >= warm:
                lat.append(time.perf_counter() - started)
                for stage, values in stages.items():
                    values.append(timings[stage])
            assert found and "memory_error" not in timings and all(m.user_id == user.pk for m in found)
        others = machine_busy(busy)
        print(
            f"retrieval at {Memory.objects.count()} memories ({index.collection}): "
            f"p50 {pct(lat, 0.5) * 1000:.1f} ms, p95 {pct(lat, 0.95) * 1000:.1f} ms (n={len(lat)}); of it "
            + ", ".join(f"{k} p50 {pct(v, 0.5):.1f}" for k, v in stages.items())
            + f"; other processes used {others:.2f} of the {os.cpu_count()} cores meanwhile"
        )
        embedder, paths = get_embedder(index.model), {"sentence-transformers": [], "short path": []}
        recall = index_recall(index.collection, users[: args.recall_users], character, embedder, queries)
        print(
            f"index recall@k against exact search over the same vectors, {args.recall_users} users x "
            f"{len(queries) + 16} queries: {recall:.4f}"
        )
        for _ in range(args.queries):  # the turn's query embedding, both ways, interleaved
            query = rnd.choice(queries)
            for name, encode in (
                ("sentence-transformers", lambda query=query: embedder.encode([query])[0]),
                ("short path", lambda query=query: embedder.encode_query(query)),
            ):
                started = time.perf_counter()
                encode()
                paths[name].append(time.perf_counter() - started)
        print(
            "one query's embedding: "
            + ", ".join(f"{name} p50 {pct(v, 0.5) * 1000:.2f} ms" for name, v in paths.items())
        )
    finally:
        if chroma is not None:
            chroma.stop()
    if not args.retrieval_only:
        print(f"RESULT reembed_memories_per_s={one_rate:.0f}")
        print(f"RESULT raw_encode_per_s={raw_rate:.0f}")
        print(f"RESULT reembed_ratio={one_rate / raw_rate:.3f}")
        print(f"RESULT two_worker_speedup={two_rate / one_rate:.3f}")
    print(f"RESULT query_embed_ms_p50={pct(paths['short path'], 0.5) * 1000:.2f}")
    print(f"RESULT query_embed_st_ms_p50={pct(paths['sentence-transformers'], 0.5) * 1000:.2f}")
    print(f"RESULT retrieval_recall_at_k={recall:.4f}")
    print(f"RESULT retrieval_ms_p50={pct(lat, 0.5) * 1000:.1f}")
    print(f"RESULT retrieval_ms_p95={pct(lat, 0.95) * 1000:.1f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--memories", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--chunk-size", type=int, default=500)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument(
        "--recall-users", type=int, default=20, help="users whose every query is checked against exact search"
    )
    parser.add_argument(
        "--retrieval-only",
        action="store_true",
        help="skip raw encode and the one-worker job: build the index with two workers, then retrieve",
    )
    main(parser.parse_args())
