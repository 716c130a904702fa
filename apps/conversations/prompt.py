"""Build the chat prompt: persona, example dialogue, as many recent turns as fit a token budget, then
what the character remembers of the user and the user's new line.

What changes every turn comes last, so the prompt's prefix (the system prompt and the older turns)
stays byte-identical from one turn to the next: an engine that keeps the keys and values of the
previous prompt (the local engine's KV cache, vLLM's automatic prefix caching, hosted prompt caching)
prefills only the new tail. These rules keep it so:

- the memory notes, retrieved anew every turn, go just before the user's new line (never into the
  system prompt), and their share of the budget is reserved whether or not any are found, so
  finding more or fewer notes never moves the history's cut;
- the lorebook entries that the recent messages bring in, and the character's post-history
  instructions, come after the history too (the entries just before the memory notes, the
  instructions after the user's line, as SillyTavern places them); the lorebook's share of the
  budget is reserved for a character that has entries, found or not;
- old turns are dropped in blocks: the history starts at a block boundary (every `block_turns`
  turns counted from the session's start, by the messages' positions in the session), the first
  one from which the rest fits. The cut is a function of the history alone and stays put until
  the history outgrows the budget again, several turns later; it never slides by one turn.

A turn may bring instructions of its own (an OpenAI client's system messages): they go in the tail
too, as a system message just before the user's line, never into the system prompt.
"""

from collections.abc import Sequence

from apps.conversations.lore import LORE_HEADING
from apps.conversations.reply import EMOTIONS
from apps.core.macros import example_dialogue_fill, macros_fill

_PER_MESSAGE_OVERHEAD = 4  # role markers and separators of the chat template
# A turn's own instructions take at most this share of the prompt budget (the rest is cut off), so
# a client's long system prompt cannot crowd out the persona and the conversation.
EXTRA_INSTRUCTIONS_SHARE = 0.25

MEMORY_HEADING = "What you remember about the user from earlier conversations:"
MEMORY_ACK = "I'll remember that."
_USER_SAID = "The user said: "  # how workers/embed/extract.py frames what the user said

# Where the memory notes go (MEMORY_PROMPT_LAYOUT). All but the last keep the prefix stable.
#   user_words     what the user said before, in their own words, in front of their new line in the
#                  same message ("I have a dog called Biscuit. What is my dog called?"), the best note
#                  last, nearest the question
#   exchange       an earlier exchange just before the user's line: the user's own words (one note a
#                  line), then the character's "I'll remember that."
#   system         a second system message (MEMORY_HEADING and the notes) just before the user's line
#   inline         MEMORY_HEADING and the notes in front of the user's line, in the same message
#   system_prompt  inside the system prompt (the layout before issue 11; the prefix changes whenever
#                  the notes do): kept to compare against
LAYOUTS = ("user_words", "exchange", "system", "inline", "system_prompt")
# bench/memory_recall.py (SmolLM2 greedy, 32 facts, one note): user_words 0.84 of the answers use the
# fact, exchange 0.72 (with the repetition penalty on the character's own words only; over the whole
# prompt, as before: user_words 0.69, exchange 0.53, inline 0.53, system 0.47, every note 0.28).
DEFAULT_LAYOUT = "user_words"


def system_prompt(
    *,
    persona: str,
    character_name: str,
    example_dialogue: str,
    memory_notes: str = "",
    description: str = "",
    personality: str = "",
    scenario: str = "",
) -> str:
    """The persona (then, from a character card, the description, personality and scenario), one line
    on emotion tags and staying in character, then the example dialogue. Card placeholders
    ({{char}}, {{user}}, <START>) are filled in.

    `memory_notes` (the old "system_prompt" layout only) go between the emotion line and the example.
    """
    name = character_name
    personality, scenario = macros_fill(personality, char=name).strip(), macros_fill(scenario, char=name).strip()
    parts = [
        macros_fill(persona, char=name).strip(),
        macros_fill(description, char=name).strip(),
        f"{name}'s personality: {personality}" if personality else "",
        f"Scenario: {scenario}" if scenario else "",
        f"You are {name}: stay in character. You may begin a reply with one emotion tag in "
        f"square brackets, one of: {', '.join(EMOTIONS)} (e.g. [happy]).",
        f"{MEMORY_HEADING}\n{memory_notes}" if memory_notes else "",
    ]
    example = example_dialogue_fill(example_dialogue, char=name)
    if example:
        parts.append(f"An example of how {name} talks:\n{example}")
    return "\n\n".join(part for part in parts if part)


def _check_layout(layout: str) -> None:
    if layout not in LAYOUTS:
        raise ValueError(f"Unknown memory prompt layout {layout!r}; use one of {', '.join(LAYOUTS)}.")


def _wrapper_cost(*, engine, layout: str) -> int:
    """What the notes' framing costs on top of the note lines, in tokens."""
    if layout == "user_words":  # nothing but the space before the user's line
        return 1
    if layout == "exchange":  # a user message and the assistant's acknowledgement
        return engine.count_tokens(MEMORY_ACK) + 2 * _PER_MESSAGE_OVERHEAD
    if layout == "system":
        return engine.count_tokens(MEMORY_HEADING) + _PER_MESSAGE_OVERHEAD
    return engine.count_tokens(MEMORY_HEADING) + 2  # inline, system_prompt: the heading and a blank line


def memory_notes(
    memories: list, *, engine, budget_tokens: int, layout: str = DEFAULT_LAYOUT, limit: int | None = None
) -> tuple[str, list[str]]:
    """The notes for the retrieved memories (best first) that fit `budget_tokens` together with their
    framing in `layout`, at most `limit` of them (None: as many as fit), and their ids.

    In the exchange and user_words layouts a note keeps the user's own words ("The user said: "
    dropped), as the user said them. Notes are lines ("- ...") in every layout but user_words, where
    they are sentences run together, the best one last (nearest the user's new line).
    """
    _check_layout(layout)
    own_words = layout in ("exchange", "user_words")
    notes, used, left = [], [], budget_tokens - _wrapper_cost(engine=engine, layout=layout)
    for memory in memories:
        if limit is not None and len(used) >= limit:
            break
        text = memory.text
        if own_words and text.startswith(_USER_SAID):
            text = text[len(_USER_SAID) :]
        if layout == "user_words":  # sentences run together: each ends as one
            note = text.strip() if text.strip().endswith((".", "!", "?")) else f"{text.strip()}."
        else:
            note = f"- {text}"
        cost = engine.count_tokens(note) + 1
        if cost > left:
            continue  # a shorter one further down may still fit
        notes.append(note)
        used.append(str(memory.pk))
        left -= cost
    if layout == "user_words":
        return " ".join(reversed(notes)), used
    return "\n".join(notes), used


def _history_start(history: Sequence[tuple[str, str]], positions: Sequence[int], fit: int, block_messages: int) -> int:
    """Where the kept history starts: the first user line at or after the first block boundary at or
    after `fit` (the oldest message from which the rest fits), the last message if none comes before it.

    The boundaries are every `block_messages` positions from the session's start, so the same start
    is chosen turn after turn until the history outgrows the budget past the next boundary. When the
    budget holds less than a block, smaller blocks (halved each time) keep what fits.
    """
    last = len(history) - 1
    if fit == 0 and positions[0] == 0:  # everything since the session's start fits (a greeting too)
        return 0
    size = max(block_messages, 1)
    while True:
        boundary = -(-positions[fit] // size) * size
        for i in range(fit, last):
            if positions[i] >= boundary and history[i][0] == "user":
                return i
        if size == 1:
            return last
        size //= 2


def _kept_start(
    history: Sequence[tuple[str, str]],
    positions: Sequence[int],
    *,
    engine,
    left: int,
    last_cost: int,
    block_messages: int,
) -> int:
    """Where the kept history starts, the last message (the user's new line) charged `last_cost`
    whatever its length, so a cut worked out before the line is known (`next_turn_prefix`) is the
    one the turn makes once it is. Each other message is counted once, the oldest not at all once
    `left` is spent."""
    left -= last_cost
    fit = len(history) - 1
    for i in range(len(history) - 2, -1, -1):
        cost = engine.count_tokens(history[i][1]) + _PER_MESSAGE_OVERHEAD
        if cost > left:
            break
        left -= cost
        fit = i
    return _history_start(history, positions, fit, block_messages)


def _history_budget(*, system: str, post: str, engine, budget_tokens: int, reserved_tokens: int) -> int:
    """What the history may take: the budget less the system prompt, the post-history instructions and
    the shares set aside for the per-turn notes (`reserved_tokens`), all of which are the same every turn."""
    left = budget_tokens - reserved_tokens - engine.count_tokens(system) - _PER_MESSAGE_OVERHEAD
    return left - (engine.count_tokens(post) + _PER_MESSAGE_OVERHEAD if post else 0)


def build_messages(
    *,
    persona: str,
    character_name: str,
    example_dialogue: str,
    history: Sequence[tuple[str, str]],
    engine,
    budget_tokens: int,
    memory_notes: str = "",
    memory_budget_tokens: int = 0,
    layout: str = DEFAULT_LAYOUT,
    positions: Sequence[int] | None = None,
    block_turns: int = 4,
    new_line_tokens: int = 0,
    description: str = "",
    personality: str = "",
    scenario: str = "",
    post_history_instructions: str = "",
    lore_notes: str = "",
    lore_budget_tokens: int = 0,
    extra_instructions: str = "",
) -> list[dict[str, str]]:
    """Chat messages for the engine: the system prompt, the kept history, the lorebook's entries (a
    system message), the memory notes (framed as `layout` says), this turn's `extra_instructions` (a
    system message, cut to EXTRA_INSTRUCTIONS_SHARE of the budget), the history's last message (the
    user's new line), then the post-history instructions (a system message).

    `memory_budget_tokens` is set aside for the notes whether or not there are any (`memory_notes`
    must fit it, as `memory_notes()` makes them), so they never move the cut; likewise
    `lore_budget_tokens` for `lore_notes` (as `lore.lore_notes()` makes them), and
    `new_line_tokens` for the user's new line (a longer line takes what it needs), so the cut does
    not depend on the line when it is no longer than that. `positions` are the history messages'
    positions in the session (default 0, 1, ...: the history is the whole session); old turns are
    dropped in blocks of `block_turns` turns counted from there (see `_history_start`). The last
    message is always kept, even alone over budget. A kept history never starts with an assistant
    line unless it is the session's opening greeting and the whole history fits. Each message is
    counted once (`engine.count_tokens`), the oldest not at all once the budget is spent.

    The extra instructions are charged to the history's share: the same instructions every turn (a
    client re-sending its system prompt) keep the cut where it is, but `next_turn_prefix`, which
    does not know them, may cut elsewhere once the history fills the budget.
    """
    _check_layout(layout)
    card = {"description": description, "personality": personality, "scenario": scenario}
    system = system_prompt(persona=persona, character_name=character_name, example_dialogue=example_dialogue, **card)
    post = macros_fill(post_history_instructions, char=character_name).strip()
    left = _history_budget(
        system=system,
        post=post,
        engine=engine,
        budget_tokens=budget_tokens,
        reserved_tokens=memory_budget_tokens + lore_budget_tokens,
    )
    extra = _clip(extra_instructions.strip(), engine=engine, most=int(budget_tokens * EXTRA_INSTRUCTIONS_SHARE))
    if extra:
        left -= engine.count_tokens(extra) + _PER_MESSAGE_OVERHEAD
    if layout == "system_prompt":
        system = system_prompt(
            persona=persona,
            character_name=character_name,
            example_dialogue=example_dialogue,
            memory_notes=memory_notes,
            **card,
        )
    positions = range(len(history)) if positions is None else positions
    if len(positions) != len(history):
        raise ValueError("positions must give one position per history message")
    kept = []
    if history:
        last_cost = max(new_line_tokens, engine.count_tokens(history[-1][1]) + _PER_MESSAGE_OVERHEAD)
        start = _kept_start(
            history, positions, engine=engine, left=left, last_cost=last_cost, block_messages=2 * block_turns
        )
        kept = list(history[start:])
    messages = [{"role": "system", "content": system}] + [{"role": r, "content": c} for r, c in kept[:-1]]
    if lore_notes:
        messages.append({"role": "system", "content": f"{LORE_HEADING}\n{lore_notes}"})
    last = [{"role": r, "content": c} for r, c in kept[-1:]]
    if memory_notes and layout == "user_words" and last:
        last[0]["content"] = f"{memory_notes} {last[0]['content']}"
    elif memory_notes and layout == "exchange":
        messages += [{"role": "user", "content": memory_notes}, {"role": "assistant", "content": MEMORY_ACK}]
    elif memory_notes and layout == "system":
        messages.append({"role": "system", "content": f"{MEMORY_HEADING}\n{memory_notes}"})
    elif memory_notes and layout == "inline" and last:
        last[0]["content"] = f"{MEMORY_HEADING}\n{memory_notes}\n\n{last[0]['content']}"
    if extra:
        messages.append({"role": "system", "content": extra})
    after = [{"role": "system", "content": post}] if post else []
    return messages + last + after


def _clip(text: str, *, engine, most: int) -> str:
    """The longest start of `text` that is at most `most` tokens (all of it when it fits)."""
    if not text or engine.count_tokens(text) <= most:
        return text
    lo, hi = 0, len(text)
    while lo < hi:  # a binary search on characters: a few tokenizer calls, not one per character
        mid = (lo + hi + 1) // 2
        if engine.count_tokens(text[:mid]) <= most:
            lo = mid
        else:
            hi = mid - 1
    return text[:lo].rstrip()


def next_turn_prefix(
    *,
    persona: str,
    character_name: str,
    example_dialogue: str,
    history: Sequence[tuple[str, str]],
    engine,
    budget_tokens: int,
    memory_budget_tokens: int = 0,
    layout: str = DEFAULT_LAYOUT,
    positions: Sequence[int] | None = None,
    block_turns: int = 4,
    new_line_tokens: int = 0,
    description: str = "",
    personality: str = "",
    scenario: str = "",
    post_history_instructions: str = "",
    lore_budget_tokens: int = 0,
) -> list[dict[str, str]]:
    """The messages the next turn's prompt will begin with, before its user line is known: the system
    prompt and the history it will keep (all of `history`, the session so far, or its newest part).

    `build_messages` with the same arguments, `history` plus a user line of at most
    `new_line_tokens`, gives these messages, then the lore, the notes, the line and the post-history
    instructions. An engine can prefill them while the user is still reading or typing. Nothing is
    stable to give for the old layout that puts the notes in the system prompt: [] then.
    """
    _check_layout(layout)
    if layout == "system_prompt":
        return []
    system = system_prompt(
        persona=persona,
        character_name=character_name,
        example_dialogue=example_dialogue,
        description=description,
        personality=personality,
        scenario=scenario,
    )
    left = _history_budget(
        system=system,
        post=macros_fill(post_history_instructions, char=character_name).strip(),
        engine=engine,
        budget_tokens=budget_tokens,
        reserved_tokens=memory_budget_tokens + lore_budget_tokens,
    )
    positions = list(range(len(history)) if positions is None else positions)
    if len(positions) != len(history):
        raise ValueError("positions must give one position per history message")
    ahead = [*history, ("user", "")]  # the line to come, charged new_line_tokens
    start = _kept_start(
        ahead,
        [*positions, positions[-1] + 1 if positions else 0],
        engine=engine,
        left=left,
        last_cost=new_line_tokens,
        block_messages=2 * block_turns,
    )
    return [{"role": "system", "content": system}] + [{"role": r, "content": c} for r, c in history[start:]]
