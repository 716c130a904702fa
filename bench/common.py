"""What both benchmarks share: a fresh scaled-mode environment and the figures' arithmetic."""

import os
import queue
import statistics
import subprocess
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "pt-bench-token"
LOG_DIR = ROOT / "var" / "bench"


def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


def yardstick_ms() -> float:
    """A pure-Python yardstick of this box's speed (median ms of `sum(range(10**6))`), printed by the
    benches whose figures move with the box: a run on another day compares through it (2026-12-05, a
    slow day: 32 ms; the same code's figures there were several times a fast day's)."""
    runs = []
    for _ in range(7):
        started = time.perf_counter()
        sum(range(10**6))
        runs.append((time.perf_counter() - started) * 1000)
    return statistics.median(runs)


def redis_round_trip_us(url: str, rounds: int = 3000) -> tuple[float, float]:
    """A second yardstick, of what the stack's hops cost on this box: back-to-back PINGs to Redis, the
    wall time and this process's CPU time per round trip (us). The pure-Python one misses it: on
    2026-12-06 `sum(range(10**6))` took 15 ms, as on a fast day, yet a ping took 159 us of wall and
    94 of CPU (58 and 48 with the client on Redis' own core: waking the other vCPU is dear on that
    VM), and every process of a turn used about twice the CPU per turn it had on the fast day."""
    import redis

    client = redis.Redis.from_url(url)
    for _ in range(200):
        client.ping()
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(rounds):
        client.ping()
    wall_us, cpu_us = (time.perf_counter() - wall) / rounds * 1e6, (time.process_time() - cpu) / rounds * 1e6
    client.close()
    return wall_us, cpu_us


def wake_up_ms(pause_s: float, rounds: int = 15) -> tuple[float, float]:
    """This machine's cost of waking an idle thread: the median round trip to another thread of this
    process after `pause_s` of idling, and back to back (ms). Every hop of a turn pays it (Daphne's
    database thread, PostgreSQL, Redis, the worker), so it reads the overhead figures across machines:
    ~0.2 ms both on a quiet bare core, 1-4 ms after a second's pause on some VMs."""
    to_thread, back = queue.Queue(), queue.Queue()
    threading.Thread(target=lambda: [back.put(to_thread.get()) for _ in range(2 * rounds)], daemon=True).start()

    def hop() -> float:
        started = time.perf_counter()
        to_thread.put(None)
        back.get()
        return (time.perf_counter() - started) * 1000

    return _paused_and_back_to_back(hop, pause_s, rounds)


def database_wake_up_ms(pause_s: float, rounds: int = 15) -> tuple[float, float]:
    """The same for another process: a `SELECT 1` round trip to PostgreSQL after `pause_s` of idling,
    and back to back (ms). A turn crosses processes ~15 times on its way to the first token (Daphne,
    PostgreSQL, Redis, the worker, Chroma), each one idle since the last turn."""
    from django.db import connection

    def hop() -> float:
        started = time.perf_counter()
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
        return (time.perf_counter() - started) * 1000

    hop()
    return _paused_and_back_to_back(hop, pause_s, rounds)


def _paused_and_back_to_back(hop, pause_s: float, rounds: int) -> tuple[float, float]:
    paused = []
    for _ in range(rounds):
        time.sleep(pause_s)
        paused.append(hop())
    return statistics.median(paused), statistics.median(hop() for _ in range(rounds))


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def worker_rss_mb(pid: int) -> float:
    """A Celery worker's resident memory: its own plus its pool processes' (prefork; the libraries
    imported before the fork are shared, and counted twice: bench/worker_start.py also gives PSS)."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    return rss_mb(pid) + sum(rss_mb(int(child)) for child in children)


def scaled_environment(max_new_tokens: int) -> dict:
    """Start PostgreSQL/Redis if needed, then a migrated, seeded bench database and a clean Redis db.

    The settings also apply to this process, which measures the in-process figures: greedy
    decoding, so the workers and this process write the same replies. BENCH_DATABASE_URL and
    BENCH_REDIS_URL move a run off the shared bench database and Redis db (the Redis db is flushed,
    and its queues are served by this run's workers): for benches run side by side.
    """
    from tests import stack

    subprocess.run(["bash", str(ROOT / "tests" / "services.sh")], check=True)
    env = {
        "DATABASE_URL": os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/personatalk_bench"),
        "REDIS_URL": os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13"),
        "SECRET_KEY": "bench",
        "DEMO_API_TOKEN": TOKEN,
        "LLM_BACKEND": "transformers",
        "LLM_TEMPERATURE": "0",
        "LLM_MAX_NEW_TOKENS": str(max_new_tokens),
        "PYTHONUNBUFFERED": "1",
        "QUOTA_TURNS": "0",  # one user talking far faster than a person would
    }
    os.environ.update(env)
    os.environ["DJANGO_SETTINGS_MODULE"] = "personatalk.settings"
    import redis

    redis.Redis.from_url(env["REDIS_URL"]).flushdb()
    stack.manage("ensure_database", env=env)
    stack.manage("migrate", "--noinput", env=env)
    stack.manage("seed_demo", env=env)
    return env


def asr_from_partial(reply_id) -> bool:
    """Whether the turn's transcript was a partial standing in for the final ASR pass (the user
    message the reply answers has `asr_from_partial` in its timings): such turns skip a stage."""
    from apps.conversations.models import Message

    reply = Message.objects.filter(pk=reply_id).first() if reply_id else None
    if reply is None:
        return False
    asked = Message.objects.filter(session_id=reply.session_id, role="user", created_at__lte=reply.created_at)
    timings = asked.order_by("-created_at").values_list("timings", flat=True).first() or {}
    return bool(timings.get("asr_from_partial"))


def reply_start(reply_id) -> tuple[bool, int]:
    """How the turn's reply started: on a partial transcript and kept (`reply_on_partial` in the reply's
    timings), and after how many replies started on a partial were dropped (`reply_restarts`)."""
    from apps.conversations.models import Message

    timings = (
        Message.objects.filter(pk=reply_id).values_list("timings", flat=True).first() if reply_id else None
    ) or {}
    return bool(timings.get("reply_on_partial")), int(timings.get("reply_restarts") or 0)
