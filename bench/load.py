"""One Daphne process under many sockets: 500 open, 100 of them doing text turns, 20 in a live voice call.

Starts the scaled stack itself (PostgreSQL, Redis, one Daphne process, a Celery `llm` worker with
LLM_BACKEND=openai against the test suite's fixed-rate server streaming the deterministic scripted
engine's replies, to load the platform rather than the model, and a voice worker with Whisper and
Piper), gives each socket a user of its own, and drives them from this process with plain
asyncio + `websockets` on loopback:

1. idle: one socket's text turns on the otherwise idle stack: the time to first text (the baseline);
2. steps of 100, 250 and 500 sockets: at each, a fifth of them do text turns (a user's think time
   apart) and one in 25 streams speech in real time in a voice call, for --seconds; the rest sit
   idle (a ping now and then, as the web app does);
3. figures: every frame checked (each finished turn's text deltas must add up to the reply the
   database saved, every turn must end), Daphne's memory per idle socket (its RSS before and after
   the sockets of the first step connect), and the latency added under load (p99 of the loaded
   turns' first text less the idle socket's p50).

    .venv/bin/python bench/load.py [--steps 100,250,500] [--seconds 40] [--llm-workers 1]

An llm worker process is one core's worth under its GIL: where 500 sockets' turns saturate it, run
more (`--llm-workers 2`) on a box with the cores for them. On this 2-core box (2026-12-05) two took
the worker's stages at 500 from 256 to 154 ms p50 to first text, but starved Daphne (the edge 22 ->
96 ms p50), so the client's first text came later (336 -> 597 ms p50). Once Daphne stopped hopping to
its sync thread for every message, two helped there: first text 462 -> 281 ms p50, added p99 977 -> 669.

The server's replies are short plain words in sentences of eight: spoken, a 20-word reply is ~5 s of
audio, as a real one (numbered tokens, before 2026-12-05's twelfth session, were spoken as "double-you
thirteen": 2-3x the TTS work, which alone took a third of the box at 100 sockets).

The load's users have no memories (their turns skip the recall: nothing to search); the recall's cost
with 1,000 memories is `bench/text_turn.py`'s `retrieval_ms_p50`.

Each step also prints its text turns' stages p50/p99 (the edge to `thinking` at the client, then the
reply's saved timings: queue, session rows, query embedding, index, first token, first text, then
`delivery`: the first text's way from the worker through Redis and Daphne to this client), so a slow
tail shows where it spent its time.

Prints per step, then `RESULT errors=`, `RESULT lost_frames=`, `RESULT added_ms_p99=` (at the last
step), `RESULT kb_per_socket=` and `RESULT sockets_per_process=` (the most sockets of a step whose
added p99 stayed within 50 ms). Voice turns are counted apart, by how they ended: each caller speaks
again 3 s after its utterance, so a reply still playing then ends `interrupted` (on the 2-core box,
2026-12-05: all 28 complete at 100 sockets, 60 of 62 at 250, 34 of 121 at 500, where Whisper and
Piper share the cores with everything else).
"""

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    LOG_DIR,
    pct,
    redis_round_trip_us,
    rss_mb,
    scaled_environment,
    wake_up_ms,
    yardstick_ms,
)

LINES = ["Hi! How are you?", "Tell me about the Moon.", "What is a comet?", "Why is the sky blue?"]
ADDED_P99_TARGET_MS = 50.0
FRAME_MS = 20


@dataclass
class Tally:
    errors: list[str] = field(default_factory=list)  # error frames, refused or dropped sockets
    first_text_ms: list[float] = field(default_factory=list)
    thinking_ms: list[float] = field(default_factory=list)  # message sent -> `thinking` (the edge saved and queued it)
    client_ms: dict[str, tuple[float, float]] = field(default_factory=dict)  # message id -> (`thinking`, first text)
    turns: list[tuple[str, str]] = field(default_factory=list)  # (message_id, text the client assembled)
    unfinished: int = 0  # text turns without turn_end when the step ended
    stalls: list[str] = field(default_factory=list)  # each unfinished turn's frames, as far as they came
    voice_turns: int = 0
    voice_statuses: dict[str, int] = field(default_factory=dict)  # the voice turns' `turn_end` statuses
    voice_frames_sent: int = 0


async def open_socket(url: str, token: str, tally: Tally, *, text_deltas: bool = True):
    import websockets

    ws = await websockets.connect(url, max_size=None, open_timeout=30, ping_interval=None)
    await ws.send(
        json.dumps({"type": "connect", "api_token": token, "character_name": "nova", "text_deltas": text_deltas})
    )
    frame = json.loads(await asyncio.wait_for(ws.recv(), 30))
    if frame["type"] != "connected":
        tally.errors.append(f"connect: {frame}")
        await ws.close()
        return None
    return ws


async def text_user(ws, tally: Tally, until: float, rnd: random.Random, think_s=(1.0, 3.0)) -> None:
    """Turns one after another, a think time apart, until `until`; checks each turn's frames."""
    await asyncio.sleep(rnd.uniform(0, 2))  # users do not all start at once
    while time.monotonic() < until:
        started, first, thinking, text, seen = time.monotonic(), None, None, [], []
        await ws.send(json.dumps({"type": "message", "content": rnd.choice(LINES)}))
        try:
            while True:
                frame = json.loads(await asyncio.wait_for(ws.recv(), 30))
                seen.append(f"{frame['type']} {time.monotonic() - started:.1f}s")
                if frame["type"] == "thinking":
                    thinking = (time.monotonic() - started) * 1000
                    tally.thinking_ms.append(thinking)
                elif frame["type"] == "text_delta":
                    first = first or time.monotonic()
                    text.append(frame["content"])
                elif frame["type"] == "error":
                    tally.errors.append(f"turn: {frame}")
                elif frame["type"] == "turn_end":
                    if frame["status"] != "complete":
                        tally.errors.append(f"turn ended {frame['status']}")
                    break
        except TimeoutError:
            tally.unfinished += 1
            tally.stalls.append(", ".join(seen[:4] + (["...", seen[-1]] if len(seen) > 4 else [])) or "nothing")
            return
        if first is not None:
            tally.first_text_ms.append((first - started) * 1000)
            if thinking is not None:
                tally.client_ms[frame["message_id"]] = (thinking, (first - started) * 1000)
        tally.turns.append((frame["message_id"], "".join(text)))
        await asyncio.sleep(rnd.uniform(*think_s))  # reading the reply, typing the next line


async def voice_user(ws, tally: Tally, until: float, speech: bytes) -> None:
    """A live call: 20 ms microphone frames in real time (speech, then silence), replies heard out."""
    step = 16 * FRAME_MS * 2
    await ws.send(json.dumps({"type": "voice_call_start"}))

    async def listen():
        while True:
            frame = json.loads(await ws.recv())
            if frame["type"] == "error":
                tally.errors.append(f"voice: {frame}")
            elif frame["type"] == "turn_end":
                tally.voice_turns += 1
                tally.voice_statuses[frame["status"]] = tally.voice_statuses.get(frame["status"], 0) + 1

    listener = asyncio.create_task(listen())
    pcm = speech + bytes(32000 * 3)  # the utterance, then 3 s of silence
    next_at = time.monotonic()
    try:
        while time.monotonic() < until:
            for i in range(0, len(pcm), step):
                if time.monotonic() >= until:
                    break
                await ws.send(pcm[i : i + step])
                tally.voice_frames_sent += 1
                next_at += FRAME_MS / 1000
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))
    finally:
        listener.cancel()


async def idle_user(ws, until: float, rnd: random.Random) -> None:
    while time.monotonic() < until:
        await asyncio.sleep(rnd.uniform(10, 20))
        await ws.send(json.dumps({"type": "ping"}))


async def drain(ws) -> None:
    """Read what is left (a pong, a reply still streaming) so the server never waits on this client."""
    try:
        while True:
            await ws.recv()
    except Exception:  # noqa: BLE001 - closed
        return


def process_tree_cpu_s(pid: int, cpu_s) -> float:
    """CPU seconds a process and its children (a prefork worker's pool) have used so far."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    return cpu_s(pid) + sum(process_tree_cpu_s(int(c), cpu_s) for c in children)


def services_cpu_s(cpu_s) -> dict[str, float]:
    """CPU seconds used so far by the services every turn touches: PostgreSQL (the server and every
    backend) and Redis. Each process is named by its command, so backends that connected during the
    step are counted in full. Approximate: another client of this machine's servers counts too, and a
    backend that exits during the step drops out (the stack's connections persist)."""
    used = {"postgres": 0.0, "redis": 0.0}
    for stat in Path("/proc").glob("[0-9]*/comm"):
        try:
            name = stat.read_text().strip()
            key = "postgres" if name == "postgres" else "redis" if name == "redis-server" else None
            if key:
                used[key] += cpu_s(int(stat.parent.name))
        except (OSError, ValueError):  # gone meanwhile
            continue
    return used


def redis_calls(url: str) -> dict[str, int]:
    """Commands Redis has run so far, by name (all clients: the layer, the cache, the broker)."""
    import redis

    stats = redis.Redis.from_url(url).info("commandstats")
    return {name.removeprefix("cmdstat_"): fields["calls"] for name, fields in stats.items()}


def make_users(n: int) -> list[str]:
    """`n` users of their own, each with an API token (one socket each; their own session)."""
    from django.contrib.auth import get_user_model

    from apps.accounts.services import token_create

    User = get_user_model()
    User.objects.filter(username__startswith="load-").delete()
    users = User.objects.bulk_create(User(username=f"load-{i}", password="!") for i in range(n))
    return [token_create(user=u, name="load").key for u in users]


def check_turns(turns: list[tuple[str, str]]) -> int:
    """Turns whose text at the client is not the reply the database saved: frames lost on the way."""
    from apps.conversations.models import Message

    saved = dict(Message.objects.filter(pk__in=[m for m, _ in turns]).values_list("pk", "content"))
    return sum(1 for message_id, text in turns if saved.get(uuid.UUID(message_id)) != text)


STAGES = ("queue_ms", "setup_ms", "memory_embed_ms", "memory_index_ms", "memory_ms", "first_token_ms", "first_text_ms")


def stage_tails(tally: Tally) -> str:
    """p50/p99 of each stage of the step's text turns, from their saved timings (the job's own clock)
    and the client's (`thinking`): where a slow first text spent its time. `delivery`: the client's
    first text less its `thinking`, the queue, the job's setup and its first text, per turn: roughly the first
    text's way from the worker through Redis and Daphne to this client (the job starts once the line
    is queued, a little before `thinking` is sent)."""
    from apps.conversations.models import Message

    saved = dict(Message.objects.filter(pk__in=[m for m, _ in tally.turns]).values_list("pk", "timings"))
    timings = list(saved.values())
    delivery = [
        first - thinking - t["queue_ms"] - t["setup_ms"] - t["first_text_ms"]
        for m, (thinking, first) in tally.client_ms.items()
        if {"queue_ms", "setup_ms", "first_text_ms"} <= (t := saved.get(uuid.UUID(m)) or {}).keys()
    ]
    parts = [("edge", tally.thinking_ms)] + [(k, [t[k] for t in timings if k in t]) for k in STAGES]
    parts.append(("delivery", delivery))
    return ", ".join(f"{name} {pct(v, 0.5):.0f}/{pct(v, 0.99):.0f}" for name, v in parts if v)


async def run(args) -> None:
    from asgiref.sync import sync_to_async

    from tests import stack
    from tests.speech import audioeval_clip

    steps = [int(s) for s in args.steps.split(",")]
    from bench.llm_concurrency import cpu_s, start_server

    env = scaled_environment(args.words)
    port = stack.free_port()
    env.update(
        LLM_BACKEND="openai",
        OPENAI_BASE_URL=f"http://127.0.0.1:{port}/v1",
        LLM_WORKER_CONCURRENCY=str(args.llm_threads),
        MEMORY_EXTRACTION="false",
        QUOTA_SOCKETS_PER_ADDRESS="0",
        QUOTA_TURNS="1000000",  # counted, as every live turn is, with a limit no user reaches here
    )
    os.environ.update(env)
    import django

    django.setup()
    tokens = await sync_to_async(make_users)(max(steps) + 1)
    from personatalk.warmup import heap_freeze

    heap_freeze()  # this client's own full collections would otherwise show in the turns it times
    speech, _ = audioeval_clip("quick_brown_fox")
    server = start_server(
        port=port, tokens_per_s=args.tokens_per_s, first_token_ms=args.first_token_ms, words=args.words
    )
    llm_workers = [
        stack.start_worker(queues="llm", env=env, log_dir=LOG_DIR, name=f"load-llm{i or ''}")
        for i in range(args.llm_workers)
    ]
    # The voice queues as the Procfile runs them: a worker each, partial transcripts below the rest.
    voice = [
        stack.start_worker(queues="asr", env=env, log_dir=LOG_DIR, name="load-asr"),
        stack.start_worker(
            queues="asr_partial", env={**env, "WORKER_NICE": "10"}, log_dir=LOG_DIR, name="load-partial"
        ),
        stack.start_worker(queues="tts", env=env, log_dir=LOG_DIR, name="load-tts"),
    ]
    daphne, url = stack.start_daphne(env=env, log_dir=LOG_DIR)
    ws_url = url.replace("http", "ws") + "/ws"
    rnd = random.Random(7)
    results, all_lost, all_errors, kb_per_socket = [], 0, 0, None
    sockets: list = []
    try:
        # 1. the idle baseline: one socket, nothing else
        idle = Tally()
        probe = await open_socket(ws_url, tokens[-1], idle)
        # warm-up: one turn (its start is up to 2 s away, the next at least 1 s after it ends)
        await text_user(probe, Tally(), time.monotonic() + 2.1, rnd)
        await text_user(probe, idle, time.monotonic() + args.seconds / 2, rnd)
        await probe.close()
        baseline = statistics.median(idle.first_text_ms)
        all_lost += await sync_to_async(check_turns)(idle.turns)
        print(f"box: sum(range(10**6)) in {yardstick_ms():.1f} ms (the yardstick runs on other days compare through)")
        wall_us, cpu_us = redis_round_trip_us(env["REDIS_URL"])
        print(f"box: a Redis PING back to back {wall_us:.0f} us of wall, {cpu_us:.0f} us of CPU (the hops' yardstick)")
        paused_ms, _ = wake_up_ms(1.0, rounds=5)
        print(f"box: a thread woken after 1 s idle in {paused_ms:.2f} ms (0.11 on a quiet VM, 4-6 on a noisy one)")
        print(
            f"idle: {len(idle.first_text_ms)} turns, first text p50={baseline:.1f} p99={pct(idle.first_text_ms, 0.99):.1f} ms"
        )
        print(f"  stages p50/p99 ms: {await sync_to_async(stage_tails)(idle)}")

        for n in steps:
            rss_before = rss_mb(daphne.popen.pid)
            while len(sockets) < n:  # connect in batches, as users arrive
                batch = min(50, n - len(sockets))
                opened = await asyncio.gather(
                    *(open_socket(ws_url, tokens[len(sockets) + i], Tally()) for i in range(batch))
                )
                sockets += [ws for ws in opened if ws is not None]
                all_errors += batch - sum(ws is not None for ws in opened)
            await asyncio.sleep(2)
            if kb_per_socket is None:
                kb_per_socket = (rss_mb(daphne.popen.pid) - rss_before) * 1024 / n
            tally = Tally()
            procs = {"daphne": daphne.popen.pid}
            procs |= {f"llm worker {i + 1}": proc.popen.pid for i, proc in enumerate(llm_workers)}
            procs |= {proc.name.removeprefix("load-"): proc.popen.pid for proc in voice}
            procs |= {"llm server": server.pid}
            cpu_before = {name: process_tree_cpu_s(pid, cpu_s) for name, pid in procs.items()}
            cpu_before["this client"] = cpu_s(os.getpid())
            cpu_before |= services_cpu_s(cpu_s)
            redis_before = redis_calls(env["REDIS_URL"])
            until = time.monotonic() + args.seconds
            talkers, callers = n // 5, (n // 25 if args.voice else 0)
            jobs = [text_user(ws, tally, until, rnd, args.think_s) for ws in sockets[:talkers]]
            jobs += [voice_user(ws, tally, until, speech) for ws in sockets[talkers : talkers + callers]]
            jobs += [idle_user(ws, until, rnd) for ws in sockets[talkers + callers :]]
            await asyncio.gather(*jobs)
            lost = await sync_to_async(check_turns)(tally.turns)
            added = pct(tally.first_text_ms, 0.99) - baseline if tally.first_text_ms else float("nan")
            results.append((n, added))
            all_lost += lost + tally.unfinished
            all_errors += len(tally.errors)
            print(
                f"{n} sockets ({talkers} talking, {callers} in calls): {len(tally.turns)} text turns, "
                f"first text p50={pct(tally.first_text_ms, 0.5):.1f} p99={pct(tally.first_text_ms, 0.99):.1f} ms "
                f"(added p99 {added:.1f}), lost {lost}, unfinished {tally.unfinished}, errors {len(tally.errors)}, "
                f"voice: {tally.voice_frames_sent} frames sent, {tally.voice_turns} turns ended {tally.voice_statuses}; "
                f"daphne rss {rss_mb(daphne.popen.pid):.0f} MB"
            )
            print(f"  stages p50/p99 ms: {await sync_to_async(stage_tails)(tally)}")
            used = {name: process_tree_cpu_s(pid, cpu_s) - cpu_before[name] for name, pid in procs.items()}
            used["this client"] = cpu_s(os.getpid()) - cpu_before["this client"]
            used |= {name: s - cpu_before[name] for name, s in services_cpu_s(cpu_s).items()}
            print(
                "  CPU s used: "
                + ", ".join(f"{name} {s:.1f}" for name, s in used.items())
                + f" (of {2 * args.seconds:.0f})"
            )
            ran = redis_calls(env["REDIS_URL"])
            busiest = sorted(ran, key=lambda name: redis_before.get(name, 0) - ran[name])[:6]
            print(
                "  Redis commands a second: "
                + ", ".join(f"{name} {(ran[name] - redis_before.get(name, 0)) / args.seconds:.0f}" for name in busiest)
            )
            for stall in tally.stalls[:3]:
                print(f"  unfinished, 30 s after the last of: {stall}")
            for error in tally.errors[:5]:
                print(f"  {error}")
            # the calls stop, the talkers' last replies end: a quiet stack for the next step
            for ws in sockets[talkers : talkers + callers]:
                await ws.send(json.dumps({"type": "voice_call_stop"}))
            drains = [asyncio.create_task(drain(ws)) for ws in sockets]
            await asyncio.sleep(5)
            for task in drains:
                task.cancel()
    finally:
        await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
        for proc in (daphne, *voice, *llm_workers):
            proc.stop()
        server.kill()

    held = [n for n, added in results if added <= ADDED_P99_TARGET_MS]
    print(f"RESULT errors={all_errors}")
    print(f"RESULT lost_frames={all_lost}")
    print(f"RESULT added_ms_p99={results[-1][1]:.1f}")
    print(f"RESULT kb_per_socket={kb_per_socket:.0f}")
    print(f"RESULT sockets_per_process={max(held) if held else 0}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", default="100,250,500", help="sockets open at each step")
    parser.add_argument("--seconds", type=float, default=40, help="how long each step's load runs")
    parser.add_argument("--tokens-per-s", type=float, default=25, help="the fixed-rate server's pace per stream")
    parser.add_argument("--first-token-ms", type=float, default=100, help="the server's own time to first token")
    parser.add_argument(
        "--llm-threads",
        type=int,
        default=64,
        help="turns the llm worker streams at once (the last step has ~35 in flight)",
    )
    parser.add_argument(
        "--llm-workers", type=int, default=1, help="llm worker processes (each one core's worth under its GIL)"
    )
    parser.add_argument("--no-voice", dest="voice", action="store_false", help="no voice calls (text and idle only)")
    parser.add_argument("--words", type=int, default=20, help="words per reply")
    parser.add_argument(
        "--think-s",
        type=lambda v: tuple(float(x) for x in v.split(",")),
        default=(1.0, 3.0),
        help="a talker's pause between a reply's end and its next line, drawn from LOW,HIGH seconds",
    )
    asyncio.run(run(parser.parse_args()))
