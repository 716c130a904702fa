"""Time to first token through the scaled stack vs. the engine alone, and the LLM worker's memory.

Starts PostgreSQL/Redis if needed, a fresh database, Daphne and one Celery LLM worker with the real
SmolLM2 model, then runs N text turns over a real WebSocket. After each turn the same prompt goes
through the engine in this process, so both figures are measured side by side on the same inputs.

    .venv/bin/python bench/text_turn.py [--turns 20]
"""

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import LOG_DIR, TOKEN, pct, scaled_environment, worker_rss_mb  # noqa: E402

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


async def client_turn(ws, text: str) -> float:
    """Seconds from sending the message to the first text at the client; waits for turn_end."""

    await ws.send(json.dumps({"type": "clear_history"}))
    while json.loads(await ws.recv())["type"] != "history_cleared":
        pass
    t0 = time.perf_counter()
    await ws.send(json.dumps({"type": "message", "content": text}))
    first = None
    while True:
        frame = json.loads(await ws.recv())
        if os.environ.get("BENCH_TRACE") and frame["type"] in ("thinking", "llm_start"):
            print(f"  {frame['type']} at {(time.perf_counter() - t0) * 1000:.1f} ms")
        if frame["type"] == "text_delta" and first is None:
            first = time.perf_counter() - t0
        if frame["type"] == "error":
            raise RuntimeError(frame)
        if frame["type"] == "turn_end":
            return first


def engine_ttft(engine, character, text: str) -> float:
    from apps.conversations.prompt import build_messages
    from apps.conversations.reply import ReplyStream, TextDelta

    t0 = time.perf_counter()
    messages = build_messages(
        persona=character.persona,
        character_name=character.name,
        example_dialogue=character.example_dialogue,
        history=[("assistant", character.greeting), ("user", text)] if character.greeting else [("user", text)],
        engine=engine,
        budget_tokens=int(os.environ.get("LLM_PROMPT_TOKENS", "1536")),
    )
    reply = ReplyStream()  # first *visible* text, as the client sees it (an emotion tag is hidden)
    for piece in engine.stream(messages):
        if any(isinstance(e, TextDelta) for e in reply.feed(piece)):
            return time.perf_counter() - t0
    raise RuntimeError("engine produced no visible text")


async def run(args) -> None:
    import websockets

    from tests import stack

    env = scaled_environment(args.max_new_tokens)
    log_dir = LOG_DIR
    worker = stack.start_worker(queues="llm", env=env, log_dir=log_dir, timeout=300)
    daphne, url = stack.start_daphne(env=env, log_dir=log_dir)
    try:
        import django

        django.setup()
        from asgiref.sync import sync_to_async

        from apps.characters.models import Character
        from workers.llm.engines import get_engine

        character = await sync_to_async(Character.objects.get)(slug=args.character)
        engine = get_engine()
        e2e, alone = [], []
        async with websockets.connect(url.replace("http", "ws") + "/ws", max_size=None) as ws:
            await ws.send(
                json.dumps(
                    {"type": "connect", "api_token": TOKEN, "character_name": args.character, "text_deltas": True}
                )
            )
            assert json.loads(await ws.recv())["type"] == "connected"
            for i in range(args.warmup + args.turns):
                text = PROMPTS[i % len(PROMPTS)]
                client = await client_turn(ws, text)
                engine_only = engine_ttft(engine, character, text)
                if i >= args.warmup:
                    e2e.append(client * 1000)
                    alone.append(engine_only * 1000)
        worker_rss = worker_rss_mb(worker.popen.pid)
    finally:
        daphne.stop()
        worker.stop()

    overhead = [a - b for a, b in zip(e2e, alone, strict=True)]
    print(f"turns={len(e2e)} model=SmolLM2-135M-Instruct (transformers, CPU)")
    print(f"client time to first token   p50={pct(e2e, 0.5):7.1f} ms  p95={pct(e2e, 0.95):7.1f} ms")
    print(f"engine alone, in-process     p50={pct(alone, 0.5):7.1f} ms  p95={pct(alone, 0.95):7.1f} ms")
    print(f"overhead per turn            p50={statistics.median(overhead):7.1f} ms  p95={pct(overhead, 0.95):7.1f} ms")
    print(f"RESULT overhead_ms_p50={statistics.median(overhead):.1f}")
    print(f"RESULT overhead_ratio={statistics.median(e2e) / statistics.median(alone):.3f}")
    print(f"RESULT llm_worker_rss_mb={worker_rss:.0f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--character", default="nova")
    parser.add_argument("--max-new-tokens", type=int, default=40)
    asyncio.run(run(parser.parse_args()))
