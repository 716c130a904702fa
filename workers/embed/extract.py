"""What is worth remembering from one turn: facts users state about themselves, their likes and
dislikes, and promises the character makes. Rules over sentences: cheap, predictable and the same
for every LLM backend (a 135M model is not a reliable extractor).

Memories keep the speaker's words, framed ("The user said: ..."), rather than rewriting pronouns.
"""

import re
from dataclasses import dataclass

_SENTENCES = re.compile(r"(?<=[.!?])\s+|\n+")
_PREFERENCE = re.compile(
    r"\b(i|we)\s+(really\s+|absolutely\s+|do\s+not\s+|don't\s+|never\s+)?"
    r"(like|love|adore|enjoy|prefer|hate|dislike|can't stand|cannot stand)\b|\bmy favou?rite\b",
    re.I,
)
_FACT = re.compile(
    r"\b(my name is|call me|i am|i'm|i was born|i live|i grew up|i work|i study|i have|i've got|i've been|"
    r"i used to|i moved|i speak|my (wife|husband|partner|son|daughter|kids?|children|mom|mother|dad|father|"
    r"brother|sister|friend|dog|cat|job|birthday|hometown|home|boss|family))\b",
    re.I,
)
_NAME = re.compile(r"\b(my name is|call me)\b", re.I)
_PROMISE = re.compile(
    r"\bi\s+(promise|will remember|'ll remember|will remind|'ll remind|won't forget|will not forget)\b", re.I
)
# Statements about the moment, not about the person.
_TRANSIENT = re.compile(r"\b(i'm|i am)\s+(fine|ok|okay|good|great|here|back|sorry|not sure|just|so|very)\b", re.I)


@dataclass(frozen=True)
class Candidate:
    text: str
    kind: str  # a Memory.Kind value
    importance: float


def sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCES.split(text or "") if s.strip()]


def _usable(sentence: str) -> bool:
    words = len(sentence.split())
    return 3 <= words <= 40 and not sentence.endswith("?")


def candidates(*, user_text: str, reply_text: str, character_name: str) -> list[Candidate]:
    """Memories one exchange suggests, in the order they were said."""
    found = []
    for sentence in sentences(user_text):
        if not _usable(sentence) or _TRANSIENT.search(sentence):
            continue
        if _NAME.search(sentence):  # "My name is Ana and I love jazz": the name matters most
            found.append(Candidate(f"The user said: {sentence}", "fact", 0.9))
        elif _PREFERENCE.search(sentence):
            found.append(Candidate(f"The user said: {sentence}", "preference", 0.6))
        elif _FACT.search(sentence):
            found.append(Candidate(f"The user said: {sentence}", "fact", 0.7))
    for sentence in sentences(reply_text):
        if _usable(sentence) and _PROMISE.search(sentence):
            found.append(Candidate(f"{character_name} promised: {sentence}", "promise", 0.8))
    return found
