"""A character's lorebook in the prompt: the entries the recent messages bring in, within a token budget.

An entry comes in when one of its keys is in the last LOREBOOK_SCAN_MESSAGES messages (the user's
new line included): as a whole word or phrase (its plural with -s or -es too), in any case unless
the entry is case-sensitive; a selective entry with secondary keys needs one of those as well; a
constant entry always comes in. What comes in is chosen highest priority first (unset counts as 0),
then highest insertion order (SillyTavern's "more important"), until the next one does not fit the
budget; it is written in insertion order, lowest first. Entries are not scanned for other entries'
keys (no recursion), and every entry goes in the per-turn tail of the prompt whatever its
`position`, so the prompt's prefix stays stable.
"""

import re
from collections.abc import Iterable, Sequence
from functools import lru_cache

from apps.core.macros import macros_fill

LORE_HEADING = "Background that matters now:"
_PER_MESSAGE_OVERHEAD = 4  # as apps/conversations/prompt.py counts a message


@lru_cache(maxsize=4096)
def _key_pattern(key: str, case_sensitive: bool) -> re.Pattern:
    word_start, word_end = re.match(r"\w", key[0]), re.match(r"\w", key[-1])
    pattern = (r"(?<!\w)" if word_start else "") + re.escape(key) + (r"(?:e?s)?(?!\w)" if word_end else "")
    return re.compile(pattern, 0 if case_sensitive else re.IGNORECASE)


def lore_mentioned(keys: Iterable[str], text: str, *, case_sensitive: bool = False) -> bool:
    """Whether one of `keys` is in `text` (see the module's docstring for how)."""
    return any(_key_pattern(key, case_sensitive).search(text) for key in (k.strip() for k in keys) if key)


def lore_triggered(entry, text: str) -> bool:
    """Whether `entry` (a LorebookEntry, or anything with its fields) comes into a prompt for `text`."""
    if not entry.enabled or not entry.content.strip():
        return False
    if entry.constant:
        return True
    case = bool(entry.case_sensitive)
    if not lore_mentioned(entry.keys, text, case_sensitive=case):
        return False
    return not (entry.selective and entry.secondary_keys) or lore_mentioned(
        entry.secondary_keys, text, case_sensitive=case
    )


def lore_wrapper_cost(*, engine) -> int:
    """What the lore's system message costs on top of its entries, in tokens."""
    return engine.count_tokens(LORE_HEADING) + _PER_MESSAGE_OVERHEAD


def lore_notes(
    entries: Iterable, *, recent: Sequence[str], character_name: str, engine, budget_tokens: int
) -> tuple[str, list[int]]:
    """The lorebook text for a turn whose last messages are `recent` (oldest first), and the ids of
    the entries in it: those triggered that fit `budget_tokens` with their heading, one a line."""
    text = "\n".join(recent)
    triggered = [entry for entry in entries if lore_triggered(entry, text)]
    if not triggered:
        return "", []
    triggered.sort(key=lambda e: (-(e.priority or 0), -e.insertion_order, e.pk))
    chosen, left = [], budget_tokens - lore_wrapper_cost(engine=engine)
    for entry in triggered:
        content = macros_fill(entry.content, char=character_name).strip()
        cost = engine.count_tokens(content) + 1
        if cost > left:
            break
        chosen.append((entry, content))
        left -= cost
    chosen.sort(key=lambda pair: (pair[0].insertion_order, pair[0].pk))
    return "\n".join(content for _, content in chosen), [entry.pk for entry, _ in chosen]
