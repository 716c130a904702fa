"""A character's lorebook and card fields in the prompt: entries whose keys are in the recent messages
join the per-turn tail (never the stable prefix) within their token budget and are recorded on the
reply; scenario, personality and description go in the system prompt, post-history instructions
after the user's line; card placeholders are filled in."""

from types import SimpleNamespace

import pytest

from apps.conversations.lore import LORE_HEADING, lore_notes
from apps.conversations.prompt import build_messages, next_turn_prefix
from workers.llm.engines import ScriptedEngine

OVERHEAD = 4


class WordEngine:
    def count_tokens(self, text: str) -> int:
        return len(text.split())


def entry(pk, keys, content, **fields):
    defaults = dict(
        secondary_keys=[],
        enabled=True,
        constant=False,
        selective=False,
        case_sensitive=False,
        insertion_order=0,
        priority=None,
    )
    return SimpleNamespace(pk=pk, keys=keys, content=content, **{**defaults, **fields})


def lore(entries, *said, budget=200):
    return lore_notes(entries, recent=list(said), character_name="Nova", engine=WordEngine(), budget_tokens=budget)


# --- which entries come in -----------------------------------------------------------------------


def test_an_entry_comes_in_when_its_key_is_said_in_any_case():
    moon, sun = entry(1, ["moon"], "The moon is far."), entry(2, ["sun"], "The sun is hot.")
    assert lore([moon, sun], "Tell me about the MOON tonight.") == ("The moon is far.", [1])
    assert lore([moon, sun], "Tell me about ships.") == ("", [])


def test_keys_match_whole_words_and_their_plurals_phrases_too():
    moon = entry(1, ["moon", "red planet"], "Far.")
    assert lore([moon], "Two moons!")[1] == [1]
    assert lore([moon], "I see the Red Planet.")[1] == [1]
    assert lore([moon], "A honeymoon in moonlight.")[1] == []
    assert lore([entry(2, ["C++"], "A language.")], "I write C++ daily")[1] == [2]


def test_a_case_sensitive_entry_needs_the_case():
    ash = entry(1, ["Ash"], "Ash is a trainer.", case_sensitive=True)
    assert lore([ash], "the ash of the fire")[1] == []
    assert lore([ash], "Ash came by")[1] == [1]


def test_a_selective_entry_needs_a_secondary_key_too():
    moon = entry(1, ["moon"], "Moon at night.", selective=True, secondary_keys=["night", "dark"])
    assert lore([moon], "the moon at noon")[1] == []
    assert lore([moon], "the moon", "it is dark")[1] == [1]  # any of the recent messages
    no_secondary = entry(2, ["moon"], "Moon.", selective=True)
    assert lore([no_secondary], "the moon")[1] == [2]


def test_constant_entries_always_come_in_disabled_and_empty_ones_never():
    entries = [
        entry(1, [], "Nova lives on a space station.", constant=True),
        entry(2, ["moon"], "Moon.", enabled=False),
        entry(3, ["moon"], "   "),
    ]
    assert lore(entries, "moon") == ("Nova lives on a space station.", [1])


def test_placeholders_in_an_entry_are_filled_in():
    assert lore([entry(1, ["home"], "{{char}} tells {{user}} about home.")], "home")[0] == (
        "Nova tells User about home."
    )


def test_the_most_important_entries_fill_the_budget_and_are_written_in_insertion_order():
    entries = [
        entry(1, ["moon"], "one two three four five", insertion_order=1, priority=1),
        entry(2, ["moon"], "six seven eight", insertion_order=2, priority=5),
        entry(3, ["moon"], "nine ten", insertion_order=0, priority=5),
        entry(4, ["moon"], "eleven", insertion_order=9),
    ]
    wrapper = len(LORE_HEADING.split()) + OVERHEAD
    # priority 5 first (insertion order 2 before 0: the higher is the more important), then 1, then none
    text, used = lore(entries, "moon", budget=wrapper + 4 + 3)
    assert used == [3, 2] and text == "nine ten\nsix seven eight"
    text, used = lore(entries, "moon", budget=wrapper + 4 + 3 + 6)
    assert used == [3, 1, 2] and text == "nine ten\none two three four five\nsix seven eight"
    # the next one does not fit: it stops there, a smaller one after it is not tried
    assert lore(entries, "moon", budget=wrapper + 4 + 3 + 5)[1] == [3, 2]


# --- where it goes in the prompt -----------------------------------------------------------------


CARD = dict(
    persona="You are {{char}}, talking with {{user}}.",
    character_name="Nova",
    example_dialogue="<START>\n{{user}}: Hi\n{{char}}: [happy] Hello!\n<START>\n{{user}}: Bye\n{{char}}: See you.",
    description="{{char}} guides people through the stars.",
    personality="curious",
    scenario="A rooftop observatory.",
    post_history_instructions="Answer as {{char}} in two sentences.",
)


def history(n):
    out = [("assistant", "Hello stargazer!")]
    for i in range(n):
        out += [("user", f"user line number {i} here"), ("assistant", f"nova reply number {i} here")]
    return [*out, ("user", "What about the moon?")]


def test_card_fields_are_in_the_system_prompt_filled_in():
    messages = build_messages(**CARD, history=history(0), engine=WordEngine(), budget_tokens=1000)
    system = messages[0]["content"]
    assert system.startswith(
        "You are Nova, talking with User.\n\nNova guides people through the stars.\n\n"
        "Nova's personality: curious\n\nScenario: A rooftop observatory.\n\nYou are Nova: stay in character."
    )
    assert system.endswith("User: Hi\nNova: [happy] Hello!\n\nUser: Bye\nNova: See you.")
    assert "{{" not in system and "<START>" not in system


def test_lore_goes_before_the_users_line_and_post_history_instructions_after_it():
    messages = build_messages(
        **CARD,
        history=history(2),
        engine=WordEngine(),
        budget_tokens=1000,
        memory_notes="I have a dog.",
        memory_budget_tokens=20,
        lore_notes="The moon is far.",
        lore_budget_tokens=30,
    )
    assert messages[-3:] == [
        {"role": "system", "content": f"{LORE_HEADING}\nThe moon is far."},
        {"role": "user", "content": "I have a dog. What about the moon?"},
        {"role": "system", "content": "Answer as Nova in two sentences."},
    ]
    assert sum(m["content"] == f"{LORE_HEADING}\nThe moon is far." for m in messages) == 1


@pytest.mark.parametrize("turns", range(0, 30, 3))
def test_the_prefix_holds_and_the_budget_too_with_lore_and_post_history(turns):
    """The next turn's prefix is worked out without the lore (not known yet): the turn's prompt starts
    with it whether entries come in or not, and stays within the budget with all its parts."""
    engine, budget = WordEngine(), 160
    said = history(turns)
    prefix = next_turn_prefix(
        **CARD, history=said[:-1], engine=engine, budget_tokens=budget, lore_budget_tokens=25, new_line_tokens=8
    )
    notes, _ = lore([entry(1, ["moon"], "word " * 15)], said[-1][1], budget=25)
    for lore_text in (notes, ""):
        messages = build_messages(
            **CARD,
            history=said,
            engine=engine,
            budget_tokens=budget,
            lore_notes=lore_text,
            lore_budget_tokens=25,
            new_line_tokens=8,
        )
        assert messages[: len(prefix)] == prefix
        assert sum(engine.count_tokens(m["content"]) + OVERHEAD for m in messages) <= budget


# --- through a turn ------------------------------------------------------------------------------


class RecordingEngine(ScriptedEngine):
    """The scripted engine, keeping each prompt it is sent."""

    def __init__(self):
        self.prompts = []

    def stream(self, messages, **kwargs):
        self.prompts.append(messages)
        yield from super().stream(messages, **kwargs)


@pytest.fixture
def turn(user, settings):
    """Run turns of a session with a card character (text_turn_run, the scripted engine): returns
    (prompt, saved reply) of each."""
    settings.MEMORY_EXTRACTION, settings.LLM_PREFILL_AHEAD = False, False
    from apps.characters.models import Character
    from apps.conversations.services import session_create
    from tests.conversations.replies import reply_to

    nova = Character.objects.create(
        name="Nova",
        slug="nova",
        greeting="Hi!",
        scenario="A rooftop observatory.",
        post_history_instructions="Stay in character as {{char}}.",
        is_published=True,
    )
    session, engine = session_create(user=user, character=nova), RecordingEngine()

    def run(said: str):
        reply = reply_to(session, said, engine=engine)
        return engine.prompts[-1], reply

    run.character = nova
    return run


def lore_in(prompt) -> str:
    return next((m["content"] for m in prompt if m["content"].startswith(LORE_HEADING)), "")


@pytest.mark.django_db
def test_a_turn_gets_the_entries_its_messages_mention_and_records_them(turn, settings):
    settings.LOREBOOK_SCAN_MESSAGES = 2  # the new line and the reply before it
    moon = turn.character.lorebook_entries.create(keys=["moon"], content="The moon is 384,400 km away.")
    turn.character.lorebook_entries.create(keys=["saturn"], content="Saturn has rings.")
    turn.character.lorebook_entries.create(keys=["moon"], content="Moon secret.", enabled=False)

    prompt, reply = turn("How far is the Moon?")
    assert lore_in(prompt) == f"{LORE_HEADING}\nThe moon is 384,400 km away."
    assert reply.lore_used == [moon.pk] and reply.status == "complete"
    assert prompt[0]["role"] == "system" and "Scenario: A rooftop observatory." in prompt[0]["content"]
    assert prompt[-1] == {"role": "system", "content": "Stay in character as Nova."}
    assert prompt[-2] == {"role": "user", "content": "How far is the Moon?"}

    prompt, reply = turn("Tell me about comets.")  # the reply before it echoed "moon": still in scope
    assert reply.lore_used == [moon.pk]
    prompt, reply = turn("And black holes?")  # two messages back now: out of scope
    assert lore_in(prompt) == "" and reply.lore_used == []
    assert all(not m["content"].startswith(LORE_HEADING) for m in prompt)


@pytest.mark.django_db
def test_a_turn_keeps_the_lore_within_its_budget(turn, settings):
    settings.LOREBOOK_TOKEN_BUDGET = len(LORE_HEADING.split()) + OVERHEAD + 12
    settings.LLM_PROMPT_TOKENS = 400
    entries = [
        turn.character.lorebook_entries.create(keys=["star"], content=" ".join(["word"] * 5), priority=p)
        for p in (1, 3, 2)
    ]
    prompt, reply = turn("What is a star?")
    assert reply.lore_used == [entries[1].pk, entries[2].pk]  # 6 + 6 tokens: the third does not fit
    assert len(lore_in(prompt).split()) <= settings.LOREBOOK_TOKEN_BUDGET - OVERHEAD
    assert sum(len(m["content"].split()) + OVERHEAD for m in prompt) <= settings.LLM_PROMPT_TOKENS
