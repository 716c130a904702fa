"""The placeholders of character cards, filled in: `{{char}}` and `{{user}}` (any case, as SillyTavern
reads them, and the older `<BOT>`/`<CHAR>`/`<USER>`), and example dialogue's `<START>` separators.

Card text is stored as the card wrote it (so an export gives it back) and filled in where it is used.
"""

import re

# How the user is named in a prompt: the label of the example dialogue's user lines ("User: …"),
# and what SillyTavern calls a user who set no persona name.
USER_NAME = "User"

_CHAR = re.compile(r"\{\{\s*char\s*\}\}|<(?:bot|char)>", re.IGNORECASE)
_USER = re.compile(r"\{\{\s*user\s*\}\}|<user>", re.IGNORECASE)
_START = re.compile(r"^[ \t]*<start>[ \t]*$", re.IGNORECASE | re.MULTILINE)


def macros_fill(text: str, *, char: str, user: str = USER_NAME) -> str:
    """`text` with the character's and the user's names in place of the card placeholders."""
    if "{" not in text and "<" not in text:
        return text
    text = _CHAR.sub(lambda _: char, text)
    return _USER.sub(lambda _: user, text)


def example_dialogue_fill(text: str, *, char: str, user: str = USER_NAME) -> str:
    """Example dialogue as the prompt shows it: `<START>` lines (a card's separators between example
    conversations) become blank lines, placeholders names, and runs of blank lines one."""
    text = _START.sub("", macros_fill(text, char=char, user=user))
    return re.sub(r"\n[ \t]*(?:\n[ \t]*)+", "\n\n", text.strip())
