"""A turn's first token after the prefill-ahead, with and without the next turn's opening in it.

After each reply the `llm` worker prefills what the session's next prompt begins with (the system
prompt and the history it keeps: `next_turn_prefix`), while the user reads and types. Every next
prompt then goes on with a message, most often the user's, whose opening (ChatML's `<|im_start|>user`
and a newline, 3 tokens) is the same whatever the user says. The prefill-ahead takes it in too
(`warm(..., then="user")`); before, the turn computed it. This runs both side by side in one engine,
alternately, on the same prompts (the demo character Nova's system prompt and greeting, a memory note
and a line), a second's pause (the user typing) before each turn, and times the turn to its first
token. The local engine as configured (LLM_* settings); which variant goes first alternates by round.

    .venv/bin/python bench/prefill_ahead.py [--rounds 12]

Quiet 2-core box, 2026-12-04 (186 tokens cached before, 189 with the opening; ~28 left to the turn):
12 rounds, first token p50 126.4 ms without the opening, 123.0 with it (`opening_saves_ms_p50=3.3`);
20 rounds, 122.1 and 118.4 (3.8). A shorter system prompt (39 tokens cached) gave 124.1 and 118.4.
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

LINES = [
    "What is the brightest star in the night sky?",
    "Can you tell me something about Mars?",
    "Why do stars twinkle?",
    "How far away is the Moon?",
]
NOTE = "I told you my favourite planet is Saturn."


def first_token_ms(engine, messages, key: str) -> tuple[float, int]:
    """Ms from the turn's start to its first token, and how many prompt tokens the cache held."""
    stats = {}
    started = time.perf_counter()
    replies = engine.stream(messages, cache_key=key, stats=stats, max_new_tokens=8)
    next(replies)
    elapsed = (time.perf_counter() - started) * 1000
    for _ in replies:
        pass
    return elapsed, stats["cached_tokens"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--pause", type=float, default=1.0, help="seconds between the prefill and the turn")
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "personatalk.settings_test")
    import django

    django.setup()
    from apps.characters.demo import DEMO_CHARACTERS
    from apps.conversations.prompt import system_prompt
    from workers.llm.engines import TransformersEngine

    nova = next(c for c in DEMO_CHARACTERS if c["name"] == "Nova")
    system = system_prompt(persona=nova["persona"], character_name="Nova", example_dialogue=nova["example_dialogue"])
    prefix = [{"role": "system", "content": system}, {"role": "assistant", "content": nova["greeting"]}]
    engine = TransformersEngine.from_settings()
    first_token_ms(engine, [*prefix, {"role": "user", "content": "Hi"}], "warm-up")  # first passes allocate
    figures = {None: ([], []), "user": ([], [])}
    for round_ in range(args.rounds):
        line = f"{NOTE} {LINES[round_ % len(LINES)]}"
        order = list(figures.items())
        for then, (times, cached) in order if round_ % 2 else order[::-1]:
            key = f"bench/{round_}/{then}"  # a session of its own: nothing cached but this prefill
            engine.warm(prefix, cache_key=key, then=then)
            time.sleep(args.pause)
            elapsed, held = first_token_ms(engine, [*prefix, {"role": "user", "content": line}], key)
            times.append(elapsed)
            cached.append(held)
    without, with_opening = (statistics.median(figures[then][0]) for then in (None, "user"))
    for then, label in ((None, "prefix only"), ("user", "prefix and the user's opening")):
        times, cached = figures[then]
        print(
            f"{label:30s} first token p50 {statistics.median(times):6.1f} ms p95 "
            f"{sorted(times)[int(0.95 * (len(times) - 1))]:6.1f} ms, {statistics.median(cached):.0f} tokens cached"
        )
    print(f"RESULT first_token_ms_p50_prefix_only={without:.1f}")
    print(f"RESULT first_token_ms_p50_with_opening={with_opening:.1f}")
    print(f"RESULT opening_saves_ms_p50={without - with_opening:.1f}")


if __name__ == "__main__":
    main()
