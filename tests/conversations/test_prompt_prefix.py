"""A long conversation keeps its prompt's prefix: over 30 turns the prompt up to the memory notes is
byte-identical from one turn to the next except where a block of old turns leaves, which happens
every several turns; the notes come after the history, just before the user's line; the budget holds.

Checked with a word-counting engine, with SmolLM2's own tokenizer and chat template (the text the
local engine prefills), through an OpenAI-compatible server (what a prefix-caching server sees), and
through the turn itself (apps/conversations/turns.py, positions read from the database).
"""

import json
import random
import threading
import uuid
from itertools import pairwise
from types import SimpleNamespace

import pytest
from django.conf import settings

from apps.characters.demo import DEMO_CHARACTERS
from apps.conversations.prompt import DEFAULT_LAYOUT, LAYOUTS, MEMORY_ACK, build_messages, memory_notes
from tests.workers.openai_server import serve
from workers.llm.engines import OpenAIEngine, ScriptedEngine

NOVA = next(c for c in DEMO_CHARACTERS if c["slug"] == "nova")
OVERHEAD = 4
TURNS = 30
BLOCK_TURNS = 4

WORDS = "star planet moon comet orbit galaxy nebula light year telescope crater dust ring sun".split()
FACTS = [
    "The user said: I have a dog called Biscuit.",
    "The user said: My name is Ana.",
    "The user said: I live in Porto with my sister.",
    "The user said: I love the rings of Saturn.",
    "Nova promised: I will tell you about Mars next time.",
]


class WordEngine:
    name = "words"

    def count_tokens(self, text: str) -> int:
        return len(text.split())


class Conversation:
    """A simulated session: a greeting, then user lines and replies of varying length (seeded), the
    memory notes for each turn a different pick of FACTS."""

    def __init__(self, engine, *, budget: int, layout: str = "exchange", memory_budget: int = 60, seed: int = 7):
        self.engine, self.budget, self.layout, self.memory_budget = engine, budget, layout, memory_budget
        self.rng = random.Random(seed)
        self.history = [("assistant", NOVA["greeting"])]

    def line(self, lo: int, hi: int) -> str:
        return " ".join(self.rng.choice(WORDS) for _ in range(self.rng.randint(lo, hi))) + "."

    def turn(self, reply: str | None = None) -> list[dict]:
        """The prompt for a new user line; the reply (given, or made up) joins the history after it."""
        self.history.append(("user", self.line(4, 16)))
        picked = [SimpleNamespace(pk=i, text=t) for i, t in enumerate(FACTS) if self.rng.random() < 0.5]
        notes, _ = memory_notes(picked, engine=self.engine, budget_tokens=self.memory_budget, layout=self.layout)
        messages = build_messages(
            persona=NOVA["persona"],
            character_name=NOVA["name"],
            example_dialogue=NOVA["example_dialogue"],
            history=self.history,
            engine=self.engine,
            budget_tokens=self.budget,
            memory_notes=notes,
            memory_budget_tokens=self.memory_budget,
            layout=self.layout,
            block_turns=BLOCK_TURNS,
        )
        self.notes = notes
        return messages

    def replied(self, reply: str | None = None) -> None:
        self.history.append(("assistant", reply if reply is not None else self.line(8, 30)))


def stable_part(messages: list[dict], notes: str) -> list[dict]:
    """The prompt before what this turn adds: the system prompt and the kept history but the last line
    (and, laid out as an exchange, before the notes)."""
    end = len(messages) - 1
    if notes and messages[end - 1]["content"] == MEMORY_ACK:
        end -= 2
    elif notes and end > 1 and messages[end - 1]["role"] == "system":
        end -= 1
    return messages[:end]


def cost(engine, messages) -> int:
    return sum(engine.count_tokens(m["content"]) + OVERHEAD for m in messages)


def check_prefix_kept(prompts: list[tuple[list[dict], str]], render) -> list[int]:
    """The turns at which the prompt's stable part changed (a block of old turns left); between them
    each prompt starts with the previous prompt's stable part, byte for byte as `render` writes it,
    followed by the previous user line, now history (the previous notes left)."""
    drops = []
    for turn, ((before, notes), (after, _)) in enumerate(pairwise(prompts), start=2):
        stable = stable_part(before, notes)
        if render(after).startswith(render(stable)):
            said = after[len(stable)]
            assert said["role"] == "user" and before[-1]["content"].endswith(said["content"])
        else:
            drops.append(turn)
    return drops


def check_layout(messages: list[dict], notes: str, layout: str) -> None:
    assert messages[-1]["role"] == "user"
    assert messages[1]["role"] != "assistant" or messages[1]["content"] == NOVA["greeting"]
    if not notes:
        return
    if layout == "exchange":
        assert messages[-3:-1] == [{"role": "user", "content": notes}, {"role": "assistant", "content": MEMORY_ACK}]
    elif layout == "system":
        assert messages[-2]["role"] == "system" and messages[-2]["content"].endswith(notes)
    elif layout == "inline":
        assert notes in messages[-1]["content"]
    elif layout == "user_words":
        assert messages[-1]["content"].startswith(f"{notes} ")
    if layout != "system_prompt":  # (a reply may repeat them: the scripted engine echoes the user's message)
        assert all(notes not in m["content"] for m in messages[:-3] if m["role"] != "assistant")


def run_conversation(engine, *, budget: int, layout: str, render, replies=None):
    talk = Conversation(engine, budget=budget, layout=layout)
    prompts = []
    for _ in range(TURNS):
        messages = talk.turn()
        assert cost(engine, messages) <= budget
        check_layout(messages, talk.notes, layout)
        prompts.append((messages, talk.notes))
        talk.replied(replies(messages) if replies else None)
    drops = check_prefix_kept(prompts, render)
    if layout != "system_prompt":
        assert all(messages[0] == prompts[0][0][0] for messages, _ in prompts)  # the system prompt stays
    return prompts, drops


def check_drops(drops: list[int]) -> None:
    assert drops, "the conversation never outgrew the budget: the test proves nothing"
    gaps = [b - a for a, b in pairwise(drops)]
    assert all(gap >= 2 for gap in gaps), drops  # never sliding turn by turn
    assert len(drops) <= TURNS // (BLOCK_TURNS - 1), drops
    assert sum(gaps) / max(len(gaps), 1) >= BLOCK_TURNS - 1, drops


def json_render(messages: list[dict]) -> str:
    """The messages as an OpenAI request body writes them, without the closing bracket."""
    return json.dumps(messages)[:-1]


@pytest.mark.parametrize("layout", [layout for layout in LAYOUTS if layout != "system_prompt"])
def test_thirty_turns_keep_the_prefix_counting_words(layout):
    _, drops = run_conversation(WordEngine(), budget=700, layout=layout, render=json_render)
    check_drops(drops)


def test_the_old_layout_changes_the_prefix_every_turn_the_notes_do():
    """The notes inside the system prompt (the layout before) break the prefix whenever they change."""
    prompts, drops = run_conversation(WordEngine(), budget=700, layout="system_prompt", render=json_render)
    changed = sum(1 for (a, _), (b, _) in pairwise(prompts) if a[0] != b[0])
    assert changed >= TURNS // 3 and len(drops) >= changed


@pytest.fixture(scope="module")
def smollm2_tokenizer():
    from transformers import AutoTokenizer

    from workers.llm.engines import converted_model_dir, default_gguf_path

    return AutoTokenizer.from_pretrained(converted_model_dir(default_gguf_path(), settings.LLM_CACHE_DIR))


def test_thirty_turns_keep_the_prefix_with_smollm2s_tokenizer_and_template(smollm2_tokenizer):
    tokenizer = smollm2_tokenizer
    engine = SimpleNamespace(count_tokens=lambda text: len(tokenizer.encode(text, add_special_tokens=False)))

    def render(messages):
        return tokenizer.apply_chat_template(messages, tokenize=False)

    budget = 800
    prompts, drops = run_conversation(engine, budget=budget, layout="exchange", render=render)
    check_drops(drops)
    for messages, _ in prompts:  # the estimate of the template's overhead holds for SmolLM2
        prompt_tokens = len(tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=True))
        assert prompt_tokens <= budget + 8


class RecordingEngine:
    """Serves the scripted engine and keeps every prompt it is sent."""

    name = "recording"

    def __init__(self):
        self.engine, self.prompts, self.warmed, self.lock = ScriptedEngine(), [], [], threading.Lock()

    def count_tokens(self, text):
        return self.engine.count_tokens(text)

    def stream(self, messages, *, should_stop=lambda: False, max_new_tokens=None, cache_key=None, stats=None):
        with self.lock:
            self.prompts.append(messages)
        yield from self.engine.stream(messages, should_stop=should_stop, max_new_tokens=max_new_tokens)

    def warm(self, messages, *, cache_key, should_stop=lambda: False, then=None):
        with self.lock:
            self.warmed.append((len(self.prompts), cache_key, messages))
        return len(messages)


def test_an_openai_compatible_server_gets_the_same_prefix_turn_after_turn():
    """What a prefix-caching server (vLLM, a hosted API) is sent shares its start, byte for byte as
    the request's JSON writes it, with the previous request's, between block drops."""
    served = RecordingEngine()
    url, stop = serve(served, api_key="sk-test")
    try:
        client = OpenAIEngine(base_url=url, api_key="sk-test")
        prompts, drops = run_conversation(
            client, budget=700, layout="exchange", render=json_render, replies=lambda m: "".join(client.stream(m))
        )
    finally:
        stop()
    assert served.prompts == [messages for messages, _ in prompts]  # the server saw what was built
    check_drops(drops)
    shared = [
        len(json.dumps(stable_part(a, notes))) / len(json.dumps(b))
        for (a, notes), (b, _) in pairwise(prompts)
        if json.dumps(b).startswith(json.dumps(stable_part(a, notes))[:-1])
    ]
    assert len(shared) >= TURNS - 1 - len(drops)
    assert sum(shared) / len(shared) > 0.6  # most of each request is the previous one's prefix


# --- through the turn itself ---------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(("layout", "notes_limit"), [(DEFAULT_LAYOUT, 1), ("exchange", 0)])
def test_a_sessions_turns_keep_their_prefix(user, settings, layout, notes_limit):
    """text_turn_run with the scripted engine: the history read back with its positions in the
    session, a failed reply left out, the notes recalled for each turn just before the user's line
    (the default layout with one note, and the exchange layout with all that fit).

    After each reply the engine is asked to prefill the next prompt's start, and every next prompt
    does start with it, the turns where a block of old turns leaves included."""
    settings.LLM_PROMPT_TOKENS, settings.MEMORY_PROMPT_TOKENS, settings.LLM_HISTORY_BLOCK_TURNS = 420, 40, 3
    settings.MEMORY_EXTRACTION, settings.MEMORY_PROMPT_LAYOUT, settings.MEMORY_PROMPT_NOTES = False, layout, notes_limit
    settings.LLM_NEW_LINE_TOKENS = 16
    from apps.characters.models import Character
    from apps.conversations.models import Message
    from apps.conversations.services import session_create, turn_finish, turn_start
    from tests.conversations.replies import reply_run

    nova = Character.objects.create(**{k: v for k, v in NOVA.items()}, is_published=True)
    session = session_create(user=user, character=nova)
    engine, frames = RecordingEngine(), []
    rng = random.Random(3)

    def recall(*, user_id, character_id, query):
        picked = [SimpleNamespace(pk=i, text=t) for i, t in enumerate(FACTS) if rng.random() < 0.5]
        return picked, {}

    prompts, noted = [], 0
    for n in range(24):
        said = f"turn {n}: " + " ".join(rng.choice(WORDS) for _ in range(8))
        turn_start(session=session, content=said)
        if n == 5:  # a reply that failed: out of later prompts, but it keeps its place in the session
            turn_finish(
                turn_id=uuid.uuid4(),
                session_id=session.pk,
                content="half a reply",
                emotion="neutral",
                status=Message.Status.FAILED,
                timings={},
            )
            continue
        before = len(engine.prompts)
        turn_id = reply_run(session, engine=engine, recall=recall, send=lambda channel, event: frames.append(event))
        assert len(engine.prompts) == before + 1
        messages = engine.prompts[-1]
        if layout == "exchange":
            notes = next((m["content"] for m in messages[-3:-2] if m["content"].startswith("- ")), "")
        else:  # user_words: what comes before the user's line in its message
            notes = messages[-1]["content"].removesuffix(said).strip()
        used = Message.objects.get(pk=turn_id).memories_used
        assert len(used) <= (notes_limit or len(FACTS)) and bool(notes) == bool(used)
        noted += len(used) > 1
        prompts.append((messages, notes))
        assert cost(engine, messages) <= settings.LLM_PROMPT_TOKENS
        assert all(m["content"] != "half a reply" for m in messages)
        check_layout(messages, notes, layout)
    assert noted if not notes_limit else not noted  # with no limit, several notes at once
    drops = check_prefix_kept(prompts, json_render)
    assert drops and all(b - a >= 2 for a, b in pairwise(drops)), drops
    assert len(engine.warmed) == len(engine.prompts)  # after every reply
    assert {key for _, key, _ in engine.warmed} == {f"{session.user_id}/{session.pk}"}
    ahead = {after: messages for after, _, messages in engine.warmed}
    started_with = [i for i in range(1, len(engine.prompts)) if engine.prompts[i][: len(ahead[i])] == ahead[i]]
    # all but the turn after the failed reply (two more lines came in between: the cut may differ)
    assert len(started_with) >= len(engine.prompts) - 2, started_with
    assert any(len(engine.prompts[d - 1]) < len(engine.prompts[d - 2]) for d in drops)  # drops were among them
