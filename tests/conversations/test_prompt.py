"""The prompt builder: system prompt first, then the newest turns that fit the token budget (dropped
in blocks), then the memory notes and the user's new line."""

import re
from types import SimpleNamespace

import pytest

from apps.conversations.prompt import (
    LAYOUTS,
    MEMORY_ACK,
    MEMORY_HEADING,
    build_messages,
    memory_notes,
    next_turn_prefix,
)
from apps.conversations.reply import EMOTIONS


class WordEngine:
    """Counts a token per word, and how many times it was asked."""

    def __init__(self):
        self.calls = 0

    def count_tokens(self, text: str) -> int:
        self.calls += 1
        return len(text.split())


PERSONA = "You are Nova, a cheerful astronomy guide."
OVERHEAD = 4


def build(history, budget, example="", engine=None, **kwargs):
    return build_messages(
        persona=PERSONA,
        character_name="Nova",
        example_dialogue=example,
        history=history,
        engine=engine or WordEngine(),
        budget_tokens=budget,
        **kwargs,
    )


def cost(messages):
    return sum(len(m["content"].split()) + OVERHEAD for m in messages)


def turns(n):
    """n user/assistant pairs of five words each: u0 a0 u1 a1 ..."""
    out = []
    for i in range(n):
        out += [("user", f"user says number {i} now"), ("assistant", f"nova answers number {i} now")]
    return out


def test_system_prompt_has_persona_emotion_line_and_example():
    messages = build([("user", "hi")], 1000, example="User: hi\nNova: [happy] Hello, stargazer!")
    system = messages[0]
    assert system["role"] == "system"
    assert system["content"].startswith(PERSONA)
    assert "[happy]" in system["content"] and all(e in system["content"] for e in EMOTIONS)
    assert "in character" in system["content"]
    assert "example of how Nova talks" in system["content"]
    assert system["content"].endswith("User: hi\nNova: [happy] Hello, stargazer!")
    assert messages[1:] == [{"role": "user", "content": "hi"}]


def test_no_example_section_without_example_dialogue():
    assert "example" not in build([("user", "hi")], 1000, example="  \n")[0]["content"].lower()


def test_whole_history_kept_when_it_fits_greeting_included():
    history = [("assistant", "Hello stargazer!")] + turns(3) + [("user", "last question")]
    messages = build(history, 10_000)
    assert [(m["role"], m["content"]) for m in messages[1:]] == history


def test_budget_respected_and_oldest_dropped_first_in_blocks():
    history = turns(10) + [("user", "what is a comet")]
    system_cost = cost(build([], 10_000))
    for room in range(1, 21):  # room for `room` messages, not one more
        budget = system_cost + room * (5 + OVERHEAD) + 2
        messages = build(history, budget, block_turns=2)
        assert cost(messages) <= budget
        kept = [(m["role"], m["content"]) for m in messages[1:]]
        assert kept == history[-len(kept) :]  # a suffix: only the oldest went
        assert kept[-1] == ("user", "what is a comet")
        assert kept[0][0] == "user"
        start = len(history) - len(kept)
        if room >= 5:  # a block of two turns (four messages) fits: the cut is on a block boundary
            assert start % 4 == 0 and len(kept) > room - 4, (room, start)


def test_kept_history_starts_with_the_user():
    history = turns(6) + [("user", "and then")]
    system_cost = cost(build([], 10_000))
    for extra in range(0, 80):
        messages = build(history, system_cost + extra)
        assert messages[1]["role"] == "user"
        assert messages[-1] == {"role": "user", "content": "and then"}
        assert cost(messages) <= system_cost + extra or len(messages) == 2


def test_last_message_kept_even_alone_over_budget():
    long = "word " * 500
    messages = build(turns(2) + [("user", long)], 50)
    assert messages[1:] == [{"role": "user", "content": long}]


def test_leading_greeting_dropped_when_history_is_cut():
    history = [("assistant", "Hello stargazer, ask me anything")] + turns(3)
    full = cost(build(history, 10_000))
    messages = build(history, full - 1)  # everything but one token fits
    assert messages[1]["role"] == "user"
    assert ("assistant", "Hello stargazer, ask me anything") not in [(m["role"], m["content"]) for m in messages]


def test_each_message_counted_once():
    engine = WordEngine()
    build(turns(50), 10_000, engine=engine)
    assert engine.calls == 1 + 100
    engine = WordEngine()
    build(turns(50), 60, engine=engine)
    assert engine.calls < 10  # stops counting once the budget is spent


def test_history_window_counted_from_the_session_start():
    """With `positions` the history may be the session's last messages only: the blocks are still
    counted from the session's start, so the cut does not move with the window."""
    session = [("assistant", "Hello stargazer")] + turns(20) + [("user", "what is a comet")]
    system_cost = cost(build([], 10_000))
    budget = system_cost + 12 * (5 + OVERHEAD)
    whole = build(session, budget, block_turns=2)
    for window_start in range(0, 20):
        window = session[window_start:]
        positions = range(window_start, len(session))
        assert build(window, budget, block_turns=2, positions=positions) == whole


def memories(*texts):
    return [SimpleNamespace(pk=i, text=text) for i, text in enumerate(texts)]


FACTS = memories(
    "The user said: I have a dog called Biscuit.", "The user said: I live in Porto.", "Nova promised: a tour."
)


def note_count(notes: str, layout: str) -> int:
    if layout == "user_words":  # sentences run together
        return len(re.findall(r"[.!?](?:\s|$)", notes))
    return len(notes.splitlines())


@pytest.mark.parametrize("layout", LAYOUTS)
def test_memory_notes_fit_their_budget_with_their_framing(layout):
    engine = WordEngine()
    history = turns(3) + [("user", "what is my dog called")]
    for budget in range(0, 40):
        notes, used = memory_notes(FACTS, engine=engine, budget_tokens=budget, layout=layout)
        bare = build(history, 10_000, layout=layout)
        messages = build(history, 10_000, layout=layout, memory_notes=notes, memory_budget_tokens=budget)
        assert cost(messages) - cost(bare) <= budget, (layout, budget)
        assert len(used) == note_count(notes, layout) if notes else used == []
    notes, used = memory_notes(FACTS, engine=engine, budget_tokens=160, layout=layout)
    assert used == ["0", "1", "2"]
    if layout == "exchange":  # the user's own words
        assert notes.splitlines() == [
            "- I have a dog called Biscuit.",
            "- I live in Porto.",
            "- Nova promised: a tour.",
        ]
    elif layout == "user_words":  # the user's own words as they said them, the best nearest their new line
        assert notes == "Nova promised: a tour. I live in Porto. I have a dog called Biscuit."
    else:
        assert notes.splitlines()[0] == "- The user said: I have a dog called Biscuit."


@pytest.mark.parametrize("layout", LAYOUTS)
def test_at_most_limit_notes_the_best_first(layout):
    engine = WordEngine()
    for limit, expected in [(1, ["0"]), (2, ["0", "1"]), (3, ["0", "1", "2"]), (None, ["0", "1", "2"])]:
        notes, used = memory_notes(FACTS, engine=engine, budget_tokens=160, layout=layout, limit=limit)
        assert used == expected and note_count(notes, layout) == len(expected)
    best, _ = memory_notes(FACTS, engine=engine, budget_tokens=160, layout=layout, limit=1)
    assert "Biscuit" in best and "Porto" not in best
    # a note too long for what is left does not count against the limit: the next that fits is taken
    long_first = memories("The user said: " + "very " * 50 + "long.", *(f.text for f in FACTS))
    _, used = memory_notes(long_first, engine=engine, budget_tokens=30, layout=layout, limit=1)
    assert used == ["1"]


def test_user_words_notes_are_sentences_in_the_users_own_words():
    notes, used = memory_notes(
        memories("The user said: My cat is Pepper", "The user said: I live in Porto!", "I was told: hello?"),
        engine=WordEngine(),
        budget_tokens=160,
        layout="user_words",
    )
    assert notes == "I was told: hello? I live in Porto! My cat is Pepper." and used == ["0", "1", "2"]


def test_memory_notes_go_after_the_history_just_before_the_users_line():
    history = turns(3) + [("user", "what is my dog called")]
    notes = "- I have a dog called Biscuit."
    kept = [{"role": r, "content": c} for r, c in history[:-1]]
    last = {"role": "user", "content": "what is my dog called"}

    def layout(name):
        return build(history, 10_000, layout=name, memory_notes=notes, memory_budget_tokens=40)

    system = build(history, 10_000)[0]
    assert layout("exchange") == [
        system,
        *kept,
        {"role": "user", "content": notes},
        {"role": "assistant", "content": MEMORY_ACK},
        last,
    ]
    assert layout("system") == [system, *kept, {"role": "system", "content": f"{MEMORY_HEADING}\n{notes}"}, last]
    assert layout("inline") == [
        system,
        *kept,
        {"role": "user", "content": f"{MEMORY_HEADING}\n{notes}\n\nwhat is my dog called"},
    ]
    words = "I have a dog called Biscuit."
    assert build(history, 10_000, layout="user_words", memory_notes=words, memory_budget_tokens=40) == [
        system,
        *kept,
        {"role": "user", "content": "I have a dog called Biscuit. what is my dog called"},
    ]
    old = layout("system_prompt")
    assert old[1:] == [*kept, last] and f"{MEMORY_HEADING}\n{notes}" in old[0]["content"]
    assert old[0]["content"].startswith(system["content"].split("\n\n")[0])
    with pytest.raises(ValueError):
        layout("sideways")


def without_notes(messages: list[dict], notes: str, layout: str) -> list[dict]:
    """The messages as they would be without the notes (all but the system_prompt layout)."""
    if not notes:
        return messages
    if layout == "exchange":
        assert messages[-3:-1] == [{"role": "user", "content": notes}, {"role": "assistant", "content": MEMORY_ACK}]
        return messages[:-3] + messages[-1:]
    if layout == "system":
        assert messages[-2] == {"role": "system", "content": f"{MEMORY_HEADING}\n{notes}"}
        return messages[:-2] + messages[-1:]
    framed = {"user_words": f"{notes} ", "inline": f"{MEMORY_HEADING}\n{notes}\n\n"}[layout]
    assert messages[-1]["content"].startswith(framed)
    return messages[:-1] + [{**messages[-1], "content": messages[-1]["content"][len(framed) :]}]


@pytest.mark.parametrize("layout", [layout for layout in LAYOUTS if layout != "system_prompt"])
def test_notes_and_their_share_never_move_the_cut(layout):
    """The notes' share is set aside with or without notes: finding more or fewer never moves the cut."""
    history = turns(12) + [("user", "tell me about my dog")]
    system_cost = cost(build([], 10_000))
    for room in range(4, 20):
        budget = system_cost + 30 + room * (5 + OVERHEAD)
        without = build(history, budget, memory_budget_tokens=30, layout=layout)
        for budget_used in range(0, 31, 5):
            notes, _ = memory_notes(FACTS, engine=WordEngine(), budget_tokens=budget_used, layout=layout)
            messages = build(history, budget, memory_notes=notes, memory_budget_tokens=30, layout=layout)
            assert cost(messages) <= budget
            assert without_notes(messages, notes, layout) == without


@pytest.mark.parametrize("layout", [layout for layout in LAYOUTS if layout != "system_prompt"])
def test_the_next_turns_prefix_is_known_before_its_line(layout):
    """next_turn_prefix, worked out before the user's line is known, is how the next prompt begins
    whenever the line fits its reserve: also on the turns where a block of old turns leaves."""
    import random

    rng = random.Random(5)
    engine = WordEngine()
    history, starts = [("assistant", "Hello stargazer")], set()
    for n in range(60):
        ahead = next_turn_prefix(
            persona=PERSONA,
            character_name="Nova",
            example_dialogue="",
            history=history,
            engine=engine,
            budget_tokens=260,
            memory_budget_tokens=30,
            layout=layout,
            block_turns=3,
            new_line_tokens=12,
        )
        line = " ".join(["word"] * rng.randint(1, 8))  # with its overhead, at most the 12 reserved
        notes = "- the user said: I have a dog" if n % 2 else ""
        messages = build(
            history + [("user", line)],
            260,
            memory_notes=notes,
            memory_budget_tokens=30,
            layout=layout,
            block_turns=3,
            new_line_tokens=12,
        )
        assert messages[: len(ahead)] == ahead, n
        assert len(messages) - len(ahead) in (1, 2, 3)  # only the notes and the line come after it
        starts.add(messages[1]["content"])
        history += [("user", line), ("assistant", " ".join(["reply"] * rng.randint(3, 30)))]
    assert len(starts) > 3  # old turns left several times: the cut turns were checked too


def test_a_longer_line_than_reserved_takes_the_room_it_needs():
    history = turns(10)
    long = " ".join(["word"] * 40)
    messages = build(history + [("user", long)], 200, new_line_tokens=12)
    assert cost(messages) <= 200
    assert messages[-1]["content"] == long


def test_no_prefix_to_prefill_for_the_layout_that_puts_notes_in_the_system_prompt():
    kwargs = dict(persona=PERSONA, character_name="Nova", example_dialogue="", engine=WordEngine())
    assert next_turn_prefix(history=turns(2), budget_tokens=500, layout="system_prompt", **kwargs) == []
    assert next_turn_prefix(history=turns(2), budget_tokens=500, **kwargs)[1:] == [
        {"role": r, "content": c} for r, c in turns(2)
    ]


# --- a turn's own instructions (an OpenAI client's system messages) ------------------------------


def test_extra_instructions_go_just_before_the_users_line_and_the_prefix_stays():
    history = turns(3) + [("user", "tell me a story")]
    plain = build(history, 10_000, memory_notes="I have a dog.", memory_budget_tokens=20, layout="exchange")
    told = build(
        history,
        10_000,
        memory_notes="I have a dog.",
        memory_budget_tokens=20,
        layout="exchange",
        extra_instructions="  Speak like a pirate.  ",
    )
    assert told[-2] == {"role": "system", "content": "Speak like a pirate."}
    assert told[-1] == {"role": "user", "content": "tell me a story"}
    assert told[:-2] == plain[:-1]  # the system prompt, history and notes: unchanged, in place
    assert "pirate" not in told[0]["content"]


def test_extra_instructions_are_charged_to_the_budget_and_cut_to_their_share():
    history = turns(10) + [("user", "what is a comet")]
    budget = cost(build([], 10_000)) + 60
    told = build(history, budget, extra_instructions="be brief " * 10)
    assert cost(told) <= budget
    said = [m for m in told if m["role"] != "system"]
    assert len(said) < len(build(history, budget)) - 1  # the instructions took the room of older turns
    huge = build([("user", "hi")], 400, extra_instructions="arr " * 1000)
    assert huge[-2]["role"] == "system" and len(huge[-2]["content"].split()) == 100  # a quarter of 400
    assert build([("user", "hi")], 400, extra_instructions=" \n ") == build([("user", "hi")], 400)
