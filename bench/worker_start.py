"""A Celery worker's start-up time and memory per pool, and how fast a killed pool process is replaced.

Starts one worker on the given queues with the real models (LLM_BACKEND=transformers unless set),
waits until it can take a job (models loaded), then reports the time that took and the resident
memory of the worker and its pool processes. With the prefork pool it then kills the pool process
(as a hard time limit does) and times the replacement until its models are loaded again.
Uses DATABASE_URL / REDIS_URL from the environment (the database need not hold any rows).

    .venv/bin/python bench/worker_start.py --queues llm --pool prefork
    .venv/bin/python bench/worker_start.py --queues asr,asr_partial,tts --pool solo
"""

import argparse
import os
import signal
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import LOG_DIR, rss_mb  # noqa: E402

MARKER = "pool process ready"  # logged by personatalk.celery once a process has loaded its models


def children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def pss_mb(pid: int) -> float:
    """Proportional set size: pages shared with the parent (imported before the fork) count once."""
    import psutil

    return psutil.Process(pid).memory_full_info().pss / 2**20


def wait_for(predicate, timeout: float, what: str) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return time.monotonic() - start
        time.sleep(0.05)
    raise RuntimeError(f"no {what} after {timeout:.0f} s")


def main(args) -> None:
    from tests import stack

    env = {"LLM_BACKEND": os.environ.get("LLM_BACKEND", "transformers"), "PYTHONUNBUFFERED": "1"}
    t0 = time.monotonic()
    worker = stack.start_worker(
        queues=args.queues, env=env, log_dir=LOG_DIR, name=f"bench-start-{args.pool}", pool=args.pool, timeout=300
    )
    try:
        ready_s = time.monotonic() - t0
        time.sleep(1)  # let start-up allocations settle
        parent = worker.popen.pid
        kids = children(parent)
        rss_parent = rss_mb(parent)
        rss_kids = sum(rss_mb(k) for k in kids)
        print(f"queues={args.queues} pool={args.pool} ready in {ready_s:.1f} s")
        print(f"rss: worker {rss_parent:.0f} MB + {len(kids)} pool process(es) {rss_kids:.0f} MB")
        print(f"RESULT ready_s={ready_s:.1f}")
        print(f"RESULT rss_total_mb={rss_parent + rss_kids:.0f}")
        print(f"RESULT pss_total_mb={pss_mb(parent) + sum(pss_mb(k) for k in kids):.0f}")
        if args.pool == "prefork" and kids:
            loaded = worker.log.read_text(errors="replace").count(MARKER)
            t1 = time.monotonic()
            os.kill(kids[0], signal.SIGKILL)
            replaced = wait_for(
                lambda: worker.log.read_text(errors="replace").count(MARKER) > loaded, 120, "replacement"
            )
            print(f"RESULT replacement_ready_s={replaced:.1f}  (killed pid {kids[0]}, {time.monotonic() - t1:.1f} s)")
    finally:
        worker.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queues", default="llm")
    parser.add_argument("--pool", default="prefork", choices=["prefork", "solo"])
    main(parser.parse_args())
