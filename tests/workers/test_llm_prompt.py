"""The prompt builder: system prompt first, then the newest turns that fit the token budget."""

from apps.conversations.prompt import build_messages
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


def build(history, budget, example="", engine=None):
    return build_messages(
        persona=PERSONA,
        character_name="Nova",
        example_dialogue=example,
        history=history,
        engine=engine or WordEngine(),
        budget_tokens=budget,
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


def test_budget_respected_and_oldest_dropped_first():
    history = turns(10) + [("user", "what is a comet")]
    system_cost = cost(build([], 10_000))
    budget = system_cost + 5 * (5 + OVERHEAD) + 2  # room for five turns, not six
    messages = build(history, budget)
    assert cost(messages) <= budget
    kept = [(m["role"], m["content"]) for m in messages[1:]]
    assert kept == history[-len(kept) :]  # a suffix: only the oldest went
    assert kept[-1] == ("user", "what is a comet")
    assert kept[0][0] == "user"
    assert len(kept) in (4, 5)


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
