"""Summaries of finished sessions, written by the chat engine (for the idle-session batch job)."""

import re

from django.conf import settings

from workers.llm.engines import get_engine

_INSTRUCTIONS = (
    "You summarize conversations for {name}'s long-term memory. In one or two plain sentences, write "
    "what the user said about themselves, what they asked for, and anything {name} promised."
)


def session_summary(*, character_name: str, messages: list[tuple[str, str]]) -> str:
    """One or two sentences about a conversation; its newest lines that fit the prompt budget."""
    engine = get_engine()
    lines, left = [], settings.LLM_PROMPT_TOKENS - 80
    for role, content in reversed(messages):
        line = f"{'User' if role == 'user' else character_name}: {content}"
        left -= engine.count_tokens(line) + 1
        if lines and left < 0:
            break
        lines.append(line)
    prompt = [
        {"role": "system", "content": _INSTRUCTIONS.format(name=character_name)},
        {"role": "user", "content": "Conversation:\n" + "\n".join(reversed(lines)) + "\n\nSummary:"},
    ]
    text = "".join(engine.stream(prompt, max_new_tokens=80))
    text = re.sub(r"^\s*\[[a-z]+\]\s*", "", text)  # an emotion tag has no place in a memory
    text = " ".join(text.split())
    if len(text) > 400:
        cut = max(text.rfind(". ", 0, 400), text.rfind("! ", 0, 400), text.rfind("? ", 0, 400))
        text = text[: cut + 1] if cut > 0 else text[:400]
    return text
