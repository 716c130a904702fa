"""Build the chat prompt: persona, example dialogue and as many recent turns as fit a token budget."""

from workers.llm.reply import EMOTIONS

_PER_MESSAGE_OVERHEAD = 4  # role markers and separators of the chat template


def system_prompt(*, persona: str, character_name: str, example_dialogue: str) -> str:
    """The persona, one line on emotion tags and staying in character, then the example dialogue."""
    parts = [
        persona.strip(),
        f"You are {character_name}: stay in character. You may begin a reply with one emotion tag in "
        f"square brackets, one of: {', '.join(EMOTIONS)} (e.g. [happy]).",
    ]
    if example_dialogue.strip():
        parts.append(f"An example of how {character_name} talks:\n{example_dialogue.strip()}")
    return "\n\n".join(part for part in parts if part)


def build_messages(
    *,
    persona: str,
    character_name: str,
    example_dialogue: str,
    history: list[tuple[str, str]],
    engine,
    budget_tokens: int,
) -> list[dict[str, str]]:
    """Chat messages for the engine: the system prompt, then the newest turns that fit the budget.

    Oldest turns are dropped first; the last one is always kept, even alone over budget. A kept
    history never starts with an assistant line unless it is the conversation's opening greeting
    and the whole history fits. Each message is counted once (`engine.count_tokens`).
    """
    system = system_prompt(persona=persona, character_name=character_name, example_dialogue=example_dialogue)
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
