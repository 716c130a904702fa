"""The local LLM's decode speed with the int8 copy (LLM_DECODE_INT8, the default on CPU) beside float32.

Same engine class, same prompts (Nova's system prompt and a user line, greedy, 48 new tokens), one
engine each, run alternately so load on the box hits both alike. Decode threads as configured
(LLM_DECODE_THREADS, 1). Prints ms per decoded token (after the first), the prefill of the prompt
(float32 in both: the int8 copy only decodes), and how many greedy replies come out word for word
the same (they need not: int8 rounds the weights; tests/e2e judges the replies themselves).

    .venv/bin/python bench/llm_decode.py [--rounds 3]

Quiet box, 2026-12-04 (SmolLM2-135M Q4_1 dequantized, 1 decode thread, 3 rounds x 6 lines):
    int8     first token p50 272 ms   decode p50 25.9 ms/token
    float32  first token p50 269 ms   decode p50 62.6 ms/token      RESULT decode_speedup_int8=2.42
    greedy replies word for word the same: 0/18 (they part after a few words; bench/memory_recall.py
    scores both alike: recall 0.844, false recall 0.000)
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
    "Tell me about Mars.",
    "What is the brightest star in the night sky?",
    "Why do stars twinkle at night?",
    "Can you tell me a fun fact about Saturn?",
    "What is a black hole?",
    "How far away is the Moon?",
]


def timed_reply(engine, messages) -> tuple[str, float, float]:
    """(reply, ms to the first token, ms per later token)."""
    started = time.perf_counter()
    marks, parts = [], []
    for delta in engine.stream(messages, max_new_tokens=48):
        marks.append(time.perf_counter())
        parts.append(delta)
    first = (marks[0] - started) * 1000
    per_token = (marks[-1] - marks[0]) * 1000 / max(1, len(engine.tokenizer.encode("".join(parts))) - 1)
    return "".join(parts), first, per_token


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "personatalk.settings_test")
    import django

    django.setup()
    from django.conf import settings

    from apps.conversations.prompt import system_prompt
    from workers.llm.engines import TransformersEngine

    system = system_prompt(
        persona="You are Nova, a cheerful astronomy guide who loves telling people about stars and planets.",
        character_name="Nova",
        example_dialogue="User: Hi!\nNova: [happy] Hello, stargazer! What shall we look at tonight?",
    )
    engines = {
        int8: TransformersEngine(
            cache_dir=settings.LLM_CACHE_DIR,
            temperature=0,
            decode_threads=settings.LLM_DECODE_THREADS,
            decode_int8=int8,
        )
        for int8 in (True, False)
    }
    for engine in engines.values():  # the first forward passes allocate
        list(engine.stream([{"role": "user", "content": "Hi"}], max_new_tokens=4))
    figures = {int8: {"first": [], "per_token": []} for int8 in engines}
    same = total = 0
    for _ in range(args.rounds):
        for line in LINES:
            messages = [{"role": "system", "content": system}, {"role": "user", "content": line}]
            replies = {}
            for int8, engine in engines.items():
                replies[int8], first, per_token = timed_reply(engine, messages)
                figures[int8]["first"].append(first)
                figures[int8]["per_token"].append(per_token)
            same += replies[True] == replies[False]
            total += 1
    for int8, label in ((True, "int8"), (False, "float32")):
        print(
            f"{label:8s} first token p50 {statistics.median(figures[int8]['first']):6.0f} ms   "
            f"decode p50 {statistics.median(figures[int8]['per_token']):5.1f} ms/token"
        )
    ratio = statistics.median(figures[False]["per_token"]) / statistics.median(figures[True]["per_token"])
    print(f"greedy replies word for word the same: {same}/{total}")
    print(f"RESULT decode_ms_per_token_int8={statistics.median(figures[True]['per_token']):.1f}")
    print(f"RESULT decode_ms_per_token_float32={statistics.median(figures[False]['per_token']):.1f}")
    print(f"RESULT decode_speedup_int8={ratio:.2f}")


if __name__ == "__main__":
    main()
