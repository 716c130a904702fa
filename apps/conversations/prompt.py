"""Build the chat prompt: persona, example dialogue and as many recent turns as fit a token budget."""

from apps.conversations.reply import EMOTIONS

_PER_MESSAGE_OVERHEAD = 4  # role markers and separators of the chat template


def system_prompt(*, persona: str, character_name: str, example_dialogue: str, memory_notes: str = "") -> str:
    """The persona, one line on emotion tags and staying in character, what the character remembers
    of this user, then the example dialogue."""
    parts = [
        persona.strip(),
        f"You are {character_name}: stay in character. You may begin a reply with one emotion tag in "
        f"square brackets, one of: {', '.join(EMOTIONS)} (e.g. [happy]).",
        memory_notes,
    ]
    if example_dialogue.strip():
        parts.append(f"An example of how {character_name} talks:\n{example_dialogue.strip()}")
    return "\n\n".join(part for part in parts if part)


MEMORY_HEADING = "What you remember about the user from earlier conversations:"


def memory_notes(memories: list, *, engine, budget_tokens: int) -> tuple[str, list[str]]:
    """The prompt section for retrieved memories (best first) that fit `budget_tokens`, and their ids."""
    lines, used, left = [MEMORY_HEADING], [], budget_tokens - engine.count_tokens(MEMORY_HEADING)
    for memory in memories:
        line = f"- {memory.text}"
        cost = engine.count_tokens(line) + 1
        if cost > left:
            continue  # a shorter one further down may still fit
        lines.append(line)
        used.append(str(memory.pk))
        left -= cost
    return ("\n".join(lines) if used else ""), used


def build_messages(
    *,
    persona: str,
    character_name: str,
    example_dialogue: str,
    history: list[tuple[str, str]],
    engine,
    budget_tokens: int,
    memory_notes: str = "",
) -> list[dict[str, str]]:
    """Chat messages for the engine: the system prompt, then the newest turns that fit the budget.

    Oldest turns are dropped first; the last one is always kept, even alone over budget. A kept
    history never starts with an assistant line unless it is the conversation's opening greeting
    and the whole history fits. Each message is counted once (`engine.count_tokens`).
    """
    system = system_prompt(
        persona=persona, character_name=character_name, example_dialogue=example_dialogue, memory_notes=memory_notes
    )
    left = budget_tokens - engine.count_tokens(system) - _PER_MESSAGE_OVERHEAD
    kept: list[tuple[str, str]] = []
    for role, content in reversed(history):
        cost = engine.count_tokens(content) + _PER_MESSAGE_OVERHEAD
        if kept and cost > left:
            break
        kept.append((role, content))
        left -= cost
    kept.reverse()
    whole = len(kept) == len(history)
    while len(kept) > 1 and kept[0][0] == "assistant" and not whole:
        kept.pop(0)
    return [{"role": "system", "content": system}] + [{"role": r, "content": c} for r, c in kept]
