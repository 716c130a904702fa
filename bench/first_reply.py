"""The first reply after `make run` vs a later one: time to the first token at the client.

Each round is a fresh start as `make run` does it (embedded mode: SQLite, in-process tasks, the real
SmolLM2): a new data folder, migrate, seed_demo, Daphne; once /health answers (the URL is announced),
one socket sends a message, then another. The converted model cache is shared between rounds, as it
is between two `make run`s. With --cold the warm-up is off (WARM_MODELS=false), for comparison.

    .venv/bin/python bench/first_reply.py [--rounds 3] [--cold]
"""

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import LOG_DIR  # noqa: E402
from tests import stack  # noqa: E402

TOKEN = "pt-demo-embedded-token"  # seed_demo's in the embedded mode
EMBEDDED = ("DATABASE_URL", "REDIS_URL", "SECRET_KEY", "TASKS_IN_PROCESS", "CHROMA_URL", "DEMO_API_TOKEN")


async def first_token_ms(ws, text: str) -> float:
    t0 = time.perf_counter()
    await ws.send(json.dumps({"type": "message", "content": text}))
    first = None
    while True:
        frame = json.loads(await ws.recv())
        if frame["type"] == "text_delta" and first is None:
            first = (time.perf_counter() - t0) * 1000
        if frame["type"] == "error":
            raise RuntimeError(frame)
        if frame["type"] == "turn_end":
            return first


async def talk(url: str) -> tuple[float, float]:
    import websockets

    async with websockets.connect(url.replace("http", "ws") + "/ws", max_size=None) as ws:
        await ws.send(
            json.dumps({"type": "connect", "api_token": TOKEN, "character_name": "nova", "text_deltas": True})
        )
        assert json.loads(await ws.recv())["type"] == "connected"
        first = await first_token_ms(ws, "Hi! What is your name?")
        later = [await first_token_ms(ws, text) for text in ("Tell me about Mars.", "Why do stars twinkle?")]
    return first, statistics.median(later)


def one_start(warm: bool) -> tuple[float, float, float]:
    with tempfile.TemporaryDirectory(prefix="pt-first-reply-") as var:
        env = {
            "DJANGO_SETTINGS_MODULE": "personatalk.settings",
            "PERSONATALK_VAR_DIR": var,
            "LLM_CACHE_DIR": str(ROOT / "var" / "models"),
            "LLM_BACKEND": "transformers",
            "LLM_TEMPERATURE": "0",
            "LLM_MAX_NEW_TOKENS": "24",
            "WARM_MODELS": "true" if warm else "false",
            "PYTHONUNBUFFERED": "1",
            **dict.fromkeys(EMBEDDED),
        }
        stack.manage("migrate", "--noinput", env=env)
        stack.manage("seed_demo", env=env)
        t0 = time.perf_counter()
        daphne, url = stack.start_daphne(env=env, log_dir=LOG_DIR, timeout=600)
        ready_s = time.perf_counter() - t0
        try:
            first, later = asyncio.run(talk(url))
        finally:
            daphne.stop()
    return first, later, ready_s


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cold", action="store_true", help="WARM_MODELS=false, for comparison")
    args = parser.parse_args()
    firsts, laters, readies = [], [], []
    for i in range(args.rounds):
        first, later, ready = one_start(warm=not args.cold)
        firsts.append(first)
        laters.append(later)
        readies.append(ready)
        print(f"start {i + 1}: ready after {ready:.1f} s, first reply {first:.0f} ms, later {later:.0f} ms", flush=True)
    print(f"mode: {'cold (WARM_MODELS=false)' if args.cold else 'warm (WARM_MODELS=true)'}, {args.rounds} starts")
    print(f"RESULT first_reply_first_token_ms={statistics.median(firsts):.0f}")
    print(f"RESULT later_reply_first_token_ms={statistics.median(laters):.0f}")
    print(f"RESULT start_to_ready_s={statistics.median(readies):.1f}")


if __name__ == "__main__":
    main()
