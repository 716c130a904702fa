"""Whether the default model uses what it remembers, for each place the memory notes can go.

One user tells Nova a fact about themselves per session (32 facts: names, pets, places, tastes, so
that the notes compete as real memories do); after each, the embed worker's `memory_extract` job
remembers it (the real MiniLM embedder and the active vector index). Then, for each layout, every
question is asked in a new session through the real turn (`text_turn_run`: recall from the index,
the prompt, SmolLM2 greedy), and a reply counts when it names the fact's answer. Retrieval is counted
apart (`memories_used` holds the fact's memory), so a miss says whether the model or the search failed.

Then ten questions no memory answers ("What is a black hole?"): a reply that names the answer of
a memory in its prompt is a false recall (a note parroted into ordinary chat).

    DATABASE_URL=... REDIS_URL=... CHROMA_URL=... .venv/bin/python bench/memory_recall.py \
        [--layouts user_words,exchange,exchange:0] [--pairs 32] [--unrelated 10] [--max-new-tokens 48]

A run is LAYOUT or LAYOUT:NOTES (MEMORY_PROMPT_NOTES for that run; 0: every note that fits
MEMORY_PROMPT_TOKENS). Uses DATABASE_URL / REDIS_URL / CHROMA_URL from the environment (a database of
its own is made and migrated if missing); without them, personatalk_recall, Redis db 12 and a local
Chroma directory. Prints `RESULT recall_rate_<layout>_notes<n>=` and `RESULT false_recall_rate_...=`
as each run ends, then `RESULT recall_rate=` and `RESULT false_recall_rate=` for the configured one
(MEMORY_PROMPT_LAYOUT, MEMORY_PROMPT_NOTES). With OMP_NUM_THREADS=1 a run takes 3-4 minutes on this
2-core machine (48 new tokens a reply, greedy), so two runs fit side by side.

Measured 2026-12-04, second session (SmolLM2-135M-Instruct Q4_1, greedy, repetition penalty 1.1 on
the character's own words only, int8 decode; 32 pairs, 10 unrelated questions, MEMORY_MIN_SIMILARITY
0.25):

    layout:notes     recall   false recall
    user_words:1     0.844    0.000   the default (float32 decode, LLM_DECODE_INT8=false: 0.844 / 0.000)
    exchange:1       0.719    0.000

    The same with the penalty over the whole prompt (as before): user_words:1 0.750 / 0.100 (int8).
    Penalising the user's words bent the names a reply copies ("Biscuzzle, your dog!"), and turned
    "I speak Portuguese at home" into a reply in broken Portuguese; with the penalty on what the
    character said (its earlier messages and this reply) only, both are answered and the unrelated
    questions no longer pick up a note ("How hot is the Sun?" -> "...for Autumn"). The misses left:
    the fact ignored (birthday, colour, chess), a year from the model's prior ("born in 1980"), and
    "What job did I use to have?" finding "I work as a nurse" before "I used to be a pilot".
    Issue 11's target, recall >= 0.8 with the default model, is met.

Earlier, first session of 2026-12-04 (float32 decode, the penalty over the whole prompt),
MEMORY_MIN_SIMILARITY 0.15 (the default then; see below for the floor):

    layout:notes     recall   false recall
    user_words:1     0.688    0.300   the default: "I have a dog called Biscuit. What is my dog called?"
    exchange:1       0.531    0.000   the notes as the user's earlier line, then "I'll remember that."
    inline:1         0.531    0.300   "What you remember about the user...:\n- ...\n\n" + the line
    system:1         0.469    0.000   a second system message before the line
    system_prompt:1  0.188    0.000   inside the system prompt (changes the prefix; to compare)
    exchange:0       0.281    0.000   the default before (every note that fits 160 tokens: five)

With five notes competing SmolLM2 answers with a neighbour's name or place ("My cat's name is
Kiwi"); with one it still misses a third of the time: it talks as the user ("My favorite season is
winter"), the repetition penalty over the prompt's tokens bends the name it should copy
("Biscuzzle", "Tear" for teal), or it answers from its own prior ("born in 2023"). Tried on the same
retrieval outside the turn (32 tokens a reply, one note): the character restating the note in the
second person ("Got it: you have a dog called Biscuit.") 0.62 with no false recall; the fact after
the question 0.69 but 7/10 false; a system-prompt line "answer with what they told you" no better;
the repetition penalty on the reply's tokens only, or off, no better in the exchange layout (without
it the model repeats "I'll remember that."; in user_words it is what reached 0.84, above). The false recalls of user_words are a note glued to an astronomy question
("How hot is the Sun?" -> "...during the Autumn season").

The similarity floor, user_words:1, same day: MEMORY_MIN_SIMILARITY 0.15 recall 0.688 / false recall
0.300; 0.25 (the default since) 0.688 / 0.100; 0.3 0.688 / 0.000. No floor keeps every off-topic
note out and every useful one in: "How hot is the Sun?" vs "...my favorite season is autumn" is
0.259, "what music should I play?" vs "...I really love jazz music" 0.266 (a test holds that one).

2026-12-04, fourth session (the KV cache's room-ahead layers, the same logits to 1e-4), quiet box:
user_words:1 recall 0.875 / false recall 0.100 (retrieved 0.969); exchange:1 0.625 / 0.000;
exchange:0 0.375 / 0.000. RESULT recall_rate=0.875 (target 0.8).
"""

import argparse
import os
import re
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# (what the user says in the first session, the question in a later one, words of a right answer)
PAIRS = [
    ("I have a dog called Biscuit.", "What is my dog called?", ["biscuit"]),
    ("My cat is named Pepper.", "What is my cat's name?", ["pepper"]),
    ("My name is Priya.", "What is my name?", ["priya"]),
    ("I live in Porto.", "Which city do I live in?", ["porto"]),
    ("I work as a nurse.", "What is my job?", ["nurse"]),
    ("My favorite color is teal.", "What is my favorite color?", ["teal"]),
    ("My sister is called Lena.", "What is my sister's name?", ["lena"]),
    ("I have a cello that I play every day.", "What instrument do I play?", ["cello", "cellist"]),
    ("My birthday is on the third of March.", "When is my birthday?", ["march"]),
    ("I love eating mango.", "What fruit do I love?", ["mango"]),
    ("I grew up in Nairobi.", "Where did I grow up?", ["nairobi"]),
    ("I speak Portuguese at home.", "What language do I speak at home?", ["portuguese"]),
    ("My brother is called Tomas.", "What is my brother's name?", ["tomas"]),
    ("I study chemistry at university.", "What do I study?", ["chemistry", "chemist"]),
    ("My favorite planet is Neptune.", "Which planet is my favorite?", ["neptune"]),
    ("I have a red bicycle.", "What color is my bicycle?", ["red"]),
    ("My boss is called Mr Okafor.", "What is my boss's name?", ["okafor"]),
    ("I moved to Canada last year.", "Which country did I move to last year?", ["canada"]),
    ("I hate broccoli.", "Which vegetable do I hate?", ["broccoli"]),
    ("My hometown is Valencia.", "What is my hometown?", ["valencia"]),
    ("I have a parrot named Kiwi.", "What is my parrot called?", ["kiwi"]),
    ("My friend Omar builds robots.", "What does my friend Omar build?", ["robot", "robots"]),
    ("I work at a bakery.", "Where do I work?", ["bakery"]),
    ("I was born in 1990.", "What year was I born?", ["1990"]),
    ("My daughter is called Mia.", "What is my daughter's name?", ["mia"]),
    ("I enjoy playing chess.", "Which game do I enjoy playing?", ["chess"]),
    ("My favorite food is ramen.", "What is my favorite food?", ["ramen"]),
    ("I have a blue car.", "What color is my car?", ["blue"]),
    ("My mother lives in Lisbon.", "Where does my mother live?", ["lisbon"]),
    ("I have two kids.", "How many kids do I have?", ["two", "2"]),
    ("I used to be a pilot.", "What job did I use to have?", ["pilot"]),
    ("My favorite season is autumn.", "Which season is my favorite?", ["autumn", "fall"]),
]


# Questions no memory answers: a reply that names a remembered fact's answer is a false recall.
UNRELATED = [
    "How far away is the Moon?",
    "What is a black hole?",
    "Why do stars twinkle?",
    "What is the Milky Way?",
    "How hot is the Sun?",
    "Can you tell me a joke?",
    "What is a comet made of?",
    "How old is the universe?",
    "What is gravity?",
    "What should I look at in the sky tonight?",
]
_COMMON_WORDS = {"two", "2"}  # answers any reply may say: not taken as a memory's trace


def environment() -> None:
    from tests import stack

    env = {
        "DATABASE_URL": os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/personatalk_recall"),
        "REDIS_URL": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/12"),
        "SECRET_KEY": "bench",
        "LLM_BACKEND": "transformers",
        "LLM_TEMPERATURE": "0",
        "MEMORY_EXTRACTION": "false",  # the facts are remembered below, by the embed job itself
        "QUOTA_TURNS": "0",
    }
    if os.environ.get("CHROMA_URL"):
        env["CHROMA_URL"] = os.environ["CHROMA_URL"]
    os.environ.update(env)
    os.environ["DJANGO_SETTINGS_MODULE"] = "personatalk.settings"
    stack.manage("ensure_database", env=env)
    stack.manage("migrate", "--noinput", env=env)
    stack.manage("seed_demo", env=env)


def answered(reply: str, answers: list[str]) -> bool:
    return any(re.search(rf"\b{re.escape(a)}\b", reply, re.I) for a in answers)


def recalled_wrongly(reply: str, question: str, answers_in_prompt: list[list[str]]) -> list[str]:
    """The answers of the memories in the prompt that a reply to an unrelated question names (and the
    question did not)."""
    words = {a for answers in answers_in_prompt for a in answers if a not in _COMMON_WORDS}
    return sorted(a for a in words if answered(reply, [a]) and not answered(question, [a]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--layouts",
        default="user_words,exchange,exchange:0",
        help="layouts to compare, each as LAYOUT or LAYOUT:NOTES (MEMORY_PROMPT_NOTES for that run; 0: all that fit)",
    )
    parser.add_argument("--pairs", type=int, default=len(PAIRS))
    parser.add_argument("--unrelated", type=int, default=len(UNRELATED), help="unrelated questions per layout")
    parser.add_argument("--max-new-tokens", type=int, default=48)
    args = parser.parse_args()
    environment()

    import django

    django.setup()
    from django.conf import settings

    from apps.characters.models import Character
    from apps.conversations.models import Message
    from apps.conversations.services import session_create, turn_finish, turn_start
    from apps.conversations.turns import text_turn_run
    from apps.memory.models import Memory
    from apps.memory.selectors import memories_recall
    from workers.embed.tasks import memory_extract
    from workers.llm.engines import TransformersEngine

    chosen = f"{settings.MEMORY_PROMPT_LAYOUT}:{settings.MEMORY_PROMPT_NOTES}"
    runs = list(
        dict.fromkeys(
            [chosen, *(r if ":" in r else f"{r}:{settings.MEMORY_PROMPT_NOTES}" for r in args.layouts.split(","))]
        )
    )
    pairs = PAIRS[: args.pairs]
    nova = Character.objects.get(slug="nova")
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.create_user(username=f"recall-{uuid.uuid4().hex[:8]}", password="x")

    started = time.monotonic()
    fact_memory = {}
    for fact, _, _ in pairs:  # one session per fact; the embed job remembers it
        session = session_create(user=user, character=nova)
        turn_start(session=session, content=fact)
        reply_id = uuid.uuid4()
        turn_finish(
            turn_id=reply_id, session_id=session.pk, content="Got it.", emotion="happy", status="complete", timings={}
        )
        memory_extract(turn_id=str(reply_id), session_id=str(session.pk))
        found = Memory.objects.filter(user=user, text__endswith=fact).first()
        fact_memory[fact] = str(found.pk) if found else None
    remembered = sum(1 for v in fact_memory.values() if v)
    print(f"remembered {remembered}/{len(pairs)} facts in {time.monotonic() - started:.1f} s", flush=True)

    answers_of = {fact_memory[fact]: answers for fact, _, answers in pairs if fact_memory[fact]}
    unrelated = UNRELATED[: args.unrelated]
    engine = TransformersEngine(
        cache_dir=settings.LLM_CACHE_DIR,
        temperature=0,
        max_new_tokens=args.max_new_tokens,
        repetition_penalty=settings.LLM_REPETITION_PENALTY,
        decode_threads=settings.LLM_DECODE_THREADS,
        decode_int8=settings.LLM_DECODE_INT8,
    )

    def ask(question: str) -> Message:
        """The reply to `question`, asked in a new session (nothing earlier in it to copy from)."""
        session = session_create(user=user, character=nova)
        turn_start(session=session, content=question)
        turn_id = str(uuid.uuid4())
        text_turn_run(
            turn_id=turn_id,
            session_id=str(session.pk),
            reply_channel="bench",
            text_deltas=False,
            submitted_at=time.time(),
            engine=engine,
            recall=memories_recall,
            send=lambda channel, event: None,
        )
        return Message.objects.get(pk=turn_id)

    results = {}
    for layout in runs:  # "layout:notes"
        settings.MEMORY_PROMPT_LAYOUT, notes = layout.split(":")
        settings.MEMORY_PROMPT_NOTES = int(notes)
        hits = retrieved = 0
        t0 = time.monotonic()
        for fact, question, answers in pairs:
            reply = ask(question)
            used = fact_memory[fact] in (reply.memories_used or [])
            ok = answered(reply.content, answers)
            hits += ok
            retrieved += used
            mark = f"{'OK ' if ok else 'no '}{'R' if used else '-'}"  # R: the fact's memory was in the prompt
            print(f"  {layout:15} {mark} {question!r} -> {reply.content!r}", flush=True)
        false = 0
        for question in unrelated:
            reply = ask(question)
            in_prompt = [answers_of[i] for i in reply.memories_used or [] if i in answers_of]
            wrong = recalled_wrongly(reply.content, question, in_prompt)
            false += bool(wrong)
            mark = f"{'FALSE' if wrong else 'ok   '} {len(reply.memories_used or [])}"  # and the notes in its prompt
            print(f"  {layout:15} {mark} {question!r} -> {reply.content!r} {wrong or ''}", flush=True)
        false_rate = false / len(unrelated) if unrelated else 0.0
        results[layout] = (hits / len(pairs), retrieved / len(pairs), false_rate, time.monotonic() - t0)
        key = layout.replace(":", "_notes")  # as each layout ends
        print(f"RESULT recall_rate_{key}={hits / len(pairs):.3f}", flush=True)
        print(f"RESULT false_recall_rate_{key}={false_rate:.3f}", flush=True)
    print()
    for layout, (rate, found, false_rate, seconds) in results.items():
        print(f"{layout:15} recall {rate:.3f}  retrieved {found:.3f}  false recall {false_rate:.3f}  ({seconds:.0f} s)")
    print(f"RESULT layout={chosen}")
    print(f"RESULT recall_rate={results[chosen][0]:.3f}")
    print(f"RESULT retrieved_rate={results[chosen][1]:.3f}")
    print(f"RESULT false_recall_rate={results[chosen][2]:.3f}")


if __name__ == "__main__":
    main()
