"""Time to first token through the scaled stack vs. the engine alone, memory retrieval apart.

Starts PostgreSQL/Redis if needed, a fresh database, a Chroma server, Daphne and one Celery LLM worker
with the real SmolLM2 model; gives the demo user 1,000 memories with the character; then runs N text
turns over a real WebSocket. After each turn the same work is done in this process on the same inputs:
the memory recall (query embedding, Chroma, rows) and the engine on the same prompt. So:
- retrieval: the worker's own figure (the reply's `memory_ms`) beside the recall alone here;
- overhead: the client's time to first token less the worker's retrieval less the engine alone (the
  queue hop, the session's rows, building the prompt, the channel layer, Daphne, the socket).

    .venv/bin/python bench/text_turn.py [--turns 60] [--memories 1000]

2026-12-04, fourth session, quiet 2-core box (runs of 20 turns; figures p50):
- The engine alone now starts from as many cached tokens as the worker had (before, its cache held
  the previous turn's prompt and shared a few tokens of the memory heading more: ~4 ms a token).
- overhead_ms_p50 25.4-38.1 over six runs (48.4 last session), retrieval_ms_p50 15.5-17.6 (alone 17.1-19.4).
- Its parts: the edge 8.8-9.4 ms, queue 2.8-3.1, the job's session rows 6.0-6.8, prompt 1.7-2.0,
  first text on to the client ~0-1, and the worker's engine 6-16 ms slower than the same engine here.
- The engine gap, looked into: the worker's prefill forward pass of the same tokens takes 8-15%
  more CPU time of its own thread (113-129 ms against 98-112 for 26-33 tokens, one thread each);
  not another process (every process's CPU sampled during it: none ran), not the fork (a solo
  pool: the same), not garbage collection (no pause over 2 ms), not page size (THP no faster).
- The edge: one trip to the database thread for the access check, quota and queueing (was three),
  one query for the access check (was two), no savepoint around the user's line, and the job's
  session and "already answered" check in one query: ~3 PostgreSQL round trips and 2 thread hops
  fewer, but the edge's figure did not move (9.1 -> 8.8-9.1 ms). py-spy on Daphne: ~4 ms a turn in
  the database thread, 2 of them waiting on PostgreSQL; the rest is outside the handler.

A later session, same box (2026-12-04, runs of 12, 20 and 20 turns, the last with the prefill-ahead
taking in the user's next message opening): overhead_ms_p50 26.1, 32.2 and 31.2 (the worker's engine
1.8, 14.6 and 10.7 ms slower than the same engine here: that part swings most between runs),
retrieval_ms_p50 18.1, 17.9 and 16.1 (alone 20.8, 21.5 and 18.1), first text at the client 181, 170
and 165 ms. The engine gap is not the fork (the same engine in a forked child and in a plain process:
124 ms both) nor how the cache was built (a prefill-ahead's cache against a cropped turn's: the same
per token). Then the memory query ran as one TorchScript graph (workers/embed/bert_script.py), two
runs of 20: retrieval_ms_p50 13.1 and 13.4 (alone 16.7 and 16.5), overhead_ms_p50 35.0 and 37.4, first
text at the client 146 and 151 ms; the engine alone got faster here (97 ms, from 115-123) than in the
worker (gap 15.4 and 20.9 ms), which is not explained yet. Timed apart, the gap is all in the forward
pass to the first token (107 ms in the worker against 96 here for the same prompt, the same cached
prefix and the same first token), not in an emotion tag or the first text's send (~2 ms). Not the
allocator: jemalloc preloaded in every process left it at 14.4 ms; glibc with a fixed 256 MB mmap
threshold made it 45. It was the bench's doing: the engine here ran at once after the worker's
turn, on warm cores, the worker's after the user's second of typing. With the same pause before the
work here (as now), two runs of 20: the engine gap 2.3 and 3.7 ms, overhead_ms_p50 20.6 and 22.2
(edge 8.0-8.4, queue 2.5, session 5.4-5.6, prompt 1.8-1.9), retrieval_ms_p50 17.2 and 16.2 (alone
18.6 and 18.5; in the worker the query's embedding 5-13 ms, Chroma ~5.5, the rows ~3), first text at
the client 144 and 146 ms. Retrieval is slower at this slower pace (a turn every ~3.3 s instead of
~2.2 s: colder again) than in the two runs before it.
What each stage costs after the user's second of typing, timed apart: much of the gap to the targets
is the first touch of each process after idle on this VM.
The job's first query takes 3.5 ms after a 0.3 s pause (1.6 back to back), a Chroma query 4.3 (1.9),
the query embedding 8.5-13 (4.4). Tried and left out:
- Beginning the memory recall (embedding, index) in a helper thread while the job reads its session:
  both hold the GIL for most of their time, so the recall took 27.7 ms instead of 18 and the session
  9.3 instead of 6.2; first text came no sooner.
- A smaller query encoder: int8 dynamic quantization of its linear layers takes the cold embedding
  to 5.4 ms on one thread, but its vectors are 0.96 cosine from the float ones (top-8 of 1,000 agree
  0.94); int8 weights with float activations (0.999) run 50-90 ms in torch's CPU kernel; bfloat16 is
  slower (6.5 ms warm, 16 cold). (Later: bfloat16 for the matmuls' weights only, inside the scripted
  graph, with float32 norms and residuals, is faster on this CPU with AVX512-BF16: 6.3 ms after a
  pause against 10.3, cosine >= 0.9999; it is the default where the CPU has it.)

2026-12-04, sixth session, on a box 3-5x slower than before (the engine alone 335-563 ms for what took
97-123; it drifted within the session, so only runs side by side compare). Profiles of the job and
the edge showed Django compiling queries, not PostgreSQL running them, and the layers' round trips:
the session's query with the character's 25 columns 4.3 ms of which 0.75 in PostgreSQL; Django's
Redis cache building a client per call (0.38 ms a call against 0.21 reused); channels_redis sending
in four round trips (0.95 ms a send against 0.27 as one script); the memory rows joined to the
character and, without statistics on the freshly seeded table, scanned all 1,000 through the owner
index. Fixed (apps/core/cache.py, apps/realtime/layers.py, the selectors): the job's session part
17.0 -> 12.8 ms, prompt 6.1 -> 2.3, retrieval 52.0 -> 44.8, edge and queue unchanged within noise
(17.0/17.2, 6.3/6.1), overhead_ms_p50 51.1 -> 32.4 (the engine gap swinging most), the old code and
the new one run back to back.

2026-12-05, tenth session: the turn's first reads written in SQL once and read back through the ORM's
own converters (apps/core/sql.py: the session with its character, its history, the access check, the
active index, the recalled memories' rows). Timed alone after a second's pause: the session 5.06 ->
1.6-2.0 ms (2.7 -> 0.6 back to back), the access check 2.42 -> 1.01. The same day's box, runs of 20:
overhead_ms_p50 19.2 before, 14.8 and 16.4 after (session 6.3 -> 2.8-3.6, edge 9.8 -> 7.9-8.5),
retrieval_ms_p50 15.4 -> 13.2 once its rows were SQL too. The per-turn overhead subtracts two engine
runs that each swing by tens of ms (the engine alone's p95 is 25-35 ms over its p50), so runs of 20
gave medians 4-5 ms apart: the bench now runs 60 turns and prints `overhead_stages_ms_p50`, the same
figure less the worker's own engine time, which that noise leaves out. Runs of 60: overhead_ms_p50
18.9 (stages 13.8) and, after the cancel flags' shared read and the blocking channel sends, 12.4
(stages 14.1); retrieval_ms_p50 13.0 and 13.7.

2026-12-05, eleventh session, a slower box (the engine alone 168 ms, later 153): the edge's parts
timed inside Daphne after the user's pause: the access check 1.3-1.9 ms, the quota 0.6-0.9, the line's
INSERT, UPDATE and COMMIT with the job's publish 5.1-6.1, the thread hops and `thinking` ~1. A typed
line is now one statement (its INSERT, UPDATE and COMMIT 3.6 ms after the pause -> 2.7, the
commit's WAL flush included). Runs of 60: overhead_ms_p50 24.9
and 23.3 (the second with the sockets' database work back in one thread: the pool costs a lone socket
nothing) -> 19.3, stages 20.0 and 19.3 -> 17.5, the edge 11.5 -> 9.6, retrieval_ms_p50 19.1 and 18.6
-> 16.6; the box drifted meanwhile, so part of it is the box.
"""

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    LOG_DIR,
    TOKEN,
    database_wake_up_ms,
    pct,
    redis_round_trip_us,
    scaled_environment,
    wake_up_ms,
    worker_rss_mb,
    yardstick_ms,
)

PROMPTS = [
    "Hi! What is your name?",
    "What is the brightest star in the night sky?",
    "Can you tell me something about Mars?",
    "Why do stars twinkle?",
    "What should I look at through a small telescope?",
    "How far away is the Moon?",
    "Tell me a fun fact about Saturn.",
    "What is a shooting star?",
]


async def client_turn(ws, text: str, think_s: float) -> tuple[float, float, str]:
    """Seconds from sending the message to `thinking` (the web process has saved it and queued the
    reply) and to the first text at the client, and the reply's id (at turn_end)."""

    await ws.send(json.dumps({"type": "clear_history"}))
    while json.loads(await ws.recv())["type"] != "history_cleared":
        pass
    await asyncio.sleep(think_s)  # the user types: the new session's prompt is prefilled meanwhile
    t0 = time.perf_counter()
    await ws.send(json.dumps({"type": "message", "content": text}))
    thinking = first = None
    while True:
        frame = json.loads(await ws.recv())
        if frame["type"] == "thinking":
            thinking = time.perf_counter() - t0
        if frame["type"] == "text_delta" and first is None:
            first = time.perf_counter() - t0
        if frame["type"] == "error":
            raise RuntimeError(frame)
        if frame["type"] == "turn_end":
            return thinking, first, frame["message_id"]


def seed_memories(user, character, n: int) -> None:
    """`n` memories of the user with this character, embedded into the active index as the embed
    worker would (the user's other memories are deleted first: the bench database outlives runs)."""
    from django.db import connection

    from apps.memory.models import Memory
    from apps.memory.services import memories_embed, memory_delete_any
    from bench.reembed import texts

    memory_delete_any(*Memory.objects.filter(user=user, character=character))
    rows = Memory.objects.bulk_create(
        Memory(user=user, character=character, text=text, kind="fact") for text in texts(n)
    )
    for i in range(0, len(rows), 256):
        memories_embed(rows[i : i + 256])
    # As autovacuum does on a live database soon after: without statistics PostgreSQL reads the
    # memories back through the owner's index, all 1,000 of them (0.66 ms), not by primary key (0.13).
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {Memory._meta.db_table}")


def in_process(engine, character, user, text: str, cached_tokens: int) -> tuple[float, float]:
    """(retrieval, engine time to first visible text) in seconds for the turn the worker just ran,
    done here on the same inputs: the same recall (query embedding, index, rows), the same prompt
    (history, memory notes), and the engine starting from as many cached prompt tokens as the
    worker's did (`cached_tokens`: its session's prefix, prefilled ahead as the session opened).
    This engine's own cache holds the previous turn's prompt, whose memory heading would otherwise
    give it a few more tokens (~4 ms each here) than the worker had."""
    from apps.conversations.reply import ReplyStream, TextDelta
    from apps.conversations.turns import turn_prompt
    from apps.memory.selectors import memories_recall

    history = [("assistant", character.greeting), ("user", text)] if character.greeting else [("user", text)]
    t0 = time.perf_counter()
    recalled, _ = memories_recall(user_id=user.pk, character_id=character.pk, query=text)
    retrieval = time.perf_counter() - t0
    messages, _, _ = turn_prompt(
        character=character, history=history, positions=list(range(len(history))), recalled=recalled, engine=engine
    )
    entry = engine.kv_cache.take(KEY)
    if entry is not None:  # cut to the worker's cached prefix (both prompts are the same tokens)
        ids, cache = entry
        if len(ids) > cached_tokens:
            cache.crop(cached_tokens - len(ids))
        engine.kv_cache.put(KEY, ids[:cached_tokens], cache)
    reply = ReplyStream()  # first *visible* text, as the client sees it (an emotion tag is hidden)
    t0 = time.perf_counter()
    for piece in engine.stream(messages, cache_key=KEY):
        if any(isinstance(e, TextDelta) for e in reply.feed(piece)):
            return retrieval, time.perf_counter() - t0
    raise RuntimeError("engine produced no visible text")


KEY = "bench/in-process"


def reply_timings(message_id) -> dict:
    from apps.conversations.models import Message

    return Message.objects.get(pk=message_id).timings


async def run(args) -> None:
    import websockets

    from tests import stack

    env = scaled_environment(args.max_new_tokens)
    chroma_url = f"http://127.0.0.1:{stack.free_port()}"
    chroma_dir = LOG_DIR / "chroma-text-turn"
    shutil.rmtree(chroma_dir, ignore_errors=True)
    # The user's memories stay at --memories; the turn quota is counted (a limit no run reaches), as
    # every live turn's is.
    env.update(CHROMA_URL=chroma_url, MEMORY_EXTRACTION="false", QUOTA_TURNS="1000000")
    os.environ.update(env)
    chroma = stack.start_chroma(url=chroma_url, path=chroma_dir, log_dir=LOG_DIR)
    worker = daphne = None
    try:
        import django

        django.setup()
        from asgiref.sync import sync_to_async

        from apps.accounts.services import token_authenticate
        from apps.characters.models import Character
        from workers.llm.engines import get_engine

        character = await sync_to_async(Character.objects.get)(slug=args.character)
        user = (await sync_to_async(token_authenticate)(key=TOKEN)).user
        started = time.perf_counter()
        await sync_to_async(seed_memories)(user, character, args.memories)
        print(f"{args.memories} memories of the user, embedded in {time.perf_counter() - started:.1f} s")
        worker = stack.start_worker(queues="llm", env=env, log_dir=LOG_DIR, timeout=300)
        daphne, url = stack.start_daphne(env=env, log_dir=LOG_DIR)
        engine = get_engine()
        e2e, alone, retrieval, retrieval_alone, prompt_ms, recalled = [], [], [], [], [], 0
        edge_ms, queue_ms, setup_ms, worker_engine_ms, delivery_ms, cached = [], [], [], [], [], []
        async with websockets.connect(url.replace("http", "ws") + "/ws", max_size=None) as ws:
            await ws.send(
                json.dumps(
                    {"type": "connect", "api_token": TOKEN, "character_name": args.character, "text_deltas": True}
                )
            )
            assert json.loads(await ws.recv())["type"] == "connected"
            for i in range(args.warmup + args.turns):
                text = PROMPTS[i % len(PROMPTS)]
                edge, client, message_id = await client_turn(ws, text, args.think_s)
                timings = await sync_to_async(reply_timings)(message_id)
                # The same pause before the same work here: the worker's turn came after the user's
                # typing, on a box idle by then (its prefill-ahead done), and so does this one.
                await asyncio.sleep(args.think_s)
                here_retrieval, engine_only = await sync_to_async(in_process)(
                    engine, character, user, text, timings.get("cached_tokens", 0)
                )
                if i >= args.warmup:
                    e2e.append(client * 1000)
                    alone.append(engine_only * 1000)
                    retrieval.append(timings["memory_ms"])
                    retrieval_alone.append(here_retrieval * 1000)
                    prompt_ms.append(timings["prompt_ms"] - timings["memory_ms"])
                    recalled += bool(timings.get("memory_ms")) and "memory_error" not in timings
                    queue_ms.append(timings["queue_ms"])
                    first_text = timings.get("first_text_ms", timings["first_token_ms"])
                    worker_engine_ms.append(first_text - timings["prompt_ms"])
                    edge_ms.append(edge * 1000)
                    setup_ms.append(timings["setup_ms"])
                    delivery_ms.append((client - edge) * 1000 - timings["queue_ms"] - timings["setup_ms"] - first_text)
                    cached.append(timings.get("cached_tokens", 0) / max(1, timings.get("prompt_tokens", 1)))
        worker_rss = worker_rss_mb(worker.popen.pid)
    finally:
        for proc in (daphne, worker, chroma):
            if proc is not None:
                proc.stop()

    overhead = [c - r - a for c, r, a in zip(e2e, retrieval, alone, strict=True)]
    # The same, less the worker's own engine time instead of the engine alone: the platform's stages
    # without the two engines' run-to-run noise (each turn's prefill swings by tens of ms on this box).
    stages = [o + a - w for o, a, w in zip(overhead, alone, worker_engine_ms, strict=True)]
    print(
        f"turns={len(e2e)} model=SmolLM2-135M-Instruct (transformers, CPU), {args.memories} memories, searched {recalled}"
    )
    print(f"client time to first token    p50={pct(e2e, 0.5):7.1f} ms  p95={pct(e2e, 0.95):7.1f} ms")
    print(f"engine alone, in-process      p50={pct(alone, 0.5):7.1f} ms  p95={pct(alone, 0.95):7.1f} ms")
    print(f"retrieval in the LLM worker   p50={pct(retrieval, 0.5):7.1f} ms  p95={pct(retrieval, 0.95):7.1f} ms")
    print(
        f"retrieval alone, in-process   p50={pct(retrieval_alone, 0.5):7.1f} ms  p95={pct(retrieval_alone, 0.95):7.1f} ms"
    )
    print("the overhead's parts, p50:")
    print(f"  the edge saving and queueing it    {pct(edge_ms, 0.5):7.1f} ms  (to `thinking` at the client)")
    print(f"  queue (web process to job start)   {pct(queue_ms, 0.5):7.1f} ms")
    print(f"  the job reading the session        {pct(setup_ms, 0.5):7.1f} ms  (its rows, `llm_start` sent)")
    print(f"  building the prompt in the worker  {pct(prompt_ms, 0.5):7.1f} ms")
    print(
        f"  engine in the worker, less alone   {pct(worker_engine_ms, 0.5) - pct(alone, 0.5):7.1f} ms  (to the first visible text, both)"
    )
    print(f"  first text on to the client        {pct(delivery_ms, 0.5):7.1f} ms  (channel layer, Daphne, socket)")
    print(f"  prompt share the worker had cached {pct(cached, 0.5):7.2f}")
    print(f"overhead, retrieval apart     p50={statistics.median(overhead):7.1f} ms  p95={pct(overhead, 0.95):7.1f} ms")
    print(
        f"  the same, the worker's engine   p50={statistics.median(stages):7.1f} ms  (its own time out, not the engine alone's)"
    )
    paused_ms, warm_ms = wake_up_ms(args.think_s)
    print(f"this machine: a thread woken after {args.think_s} s idle {paused_ms:.2f} ms, back to back {warm_ms:.2f} ms")
    paused_ms, warm_ms = await sync_to_async(database_wake_up_ms)(args.think_s)
    print(
        f"              PostgreSQL's `SELECT 1` after {args.think_s} s idle {paused_ms:.2f} ms, back to back {warm_ms:.2f} ms"
    )
    print(
        f"              sum(range(10**6)) in {yardstick_ms():.1f} ms (the yardstick runs on other days compare through)"
    )
    wall_us, cpu_us = redis_round_trip_us(env["REDIS_URL"])
    print(f"              a Redis PING back to back {wall_us:.0f} us of wall, {cpu_us:.0f} us of this process's CPU")
    print(f"RESULT overhead_ms_p50={statistics.median(overhead):.1f}")
    print(f"RESULT overhead_stages_ms_p50={statistics.median(stages):.1f}")
    print(f"RESULT retrieval_ms_p50={statistics.median(retrieval):.1f}")
    print(f"RESULT retrieval_alone_ms_p50={statistics.median(retrieval_alone):.1f}")
    print(f"RESULT engine_alone_ms_p50={statistics.median(alone):.1f}")
    print(
        f"RESULT overhead_ratio={statistics.median(e2e) / statistics.median([a + r for a, r in zip(alone, retrieval_alone, strict=True)]):.3f}"
    )
    print(f"RESULT llm_worker_rss_mb={worker_rss:.0f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--memories", type=int, default=1000, help="the user's memories with the character")
    parser.add_argument("--think-s", type=float, default=1.0, help="pause before each line, as a user types it")
    parser.add_argument("--character", default="nova")
    parser.add_argument("--max-new-tokens", type=int, default=40)
    asyncio.run(run(parser.parse_args()))
