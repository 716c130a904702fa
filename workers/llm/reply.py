"""Turn a stream of reply text into visible deltas and sentences, with the emotion tag parsed out.

A character may open its reply with an emotion tag ("[happy]", "(happy)", "*happy*",
"[emotion: happy]"); it becomes the message's emotion and is never shown. Unknown or missing
tags mean "neutral". Sentences are cut where they end so speech (and `response` frames) can start
before the whole reply is written.
"""

import re
from dataclasses import dataclass

EMOTIONS = ("neutral", "happy", "sad", "angry", "surprised", "excited", "shy", "thinking")
_TAG_WAIT_CHARS = 24  # longest opening we hold back while waiting for a tag to close
_OPENERS = {"[": "]", "(": ")", "*": "*"}
_TAG = re.compile(r"^\s*([\[(*])\s*(?:emotion\s*[:=]\s*)?([A-Za-z]+)\s*([\])*])\s*", re.I)
_STRAY_TAG = re.compile(r"\s*\[(?:%s)\]" % "|".join(EMOTIONS), re.I)
_ABBREVIATIONS = {"mr", "mrs", "ms", "dr", "st", "prof", "vs", "etc", "e.g", "i.e", "jr", "sr"}
_ENDERS = ".!?…。！？"
_CJK_ENDERS = "。！？"


@dataclass(frozen=True)
class TextDelta:
    text: str


@dataclass(frozen=True)
class Sentence:
    text: str
    emotion: str
    index: int


class ReplyStream:
    """Feed deltas in; get `TextDelta` and `Sentence` events out."""

    def __init__(self, *, first_clause_min_words: int = 0) -> None:
        """With `first_clause_min_words`, the first sentence may end at a comma after that many words
        (so speech can start sooner); later ones are whole sentences."""
        self.first_clause_min_words = first_clause_min_words
        self.emotion = "neutral"
        self._head: str | None = ""  # text held while a leading tag may still be open; None once decided
        self._pending = ""  # visible text not yet shown (a possible stray tag at its end)
        self._shown = ""  # all visible text shown so far
        self._sentence_start = 0
        self._index = 0

    @property
    def text(self) -> str:
        return self._shown.strip()

    def feed(self, delta: str) -> list:
        if self._head is not None:
            self._head += delta
            visible = self._parse_head(final=False)
            if visible is None:
                return []
            delta = visible
        return self._show(delta, final=False)

    def finish(self) -> list:
        events = []
        if self._head is not None:
            events += self._show(self._parse_head(final=True) or "", final=True)
        else:
            events += self._show("", final=True)
        tail = self._shown[self._sentence_start:].strip()
        if tail:
            events.append(Sentence(tail, self.emotion, self._index))
            self._index += 1
            self._sentence_start = len(self._shown)
        return events

    # --- leading tag ------------------------------------------------------------------------

    def _parse_head(self, *, final: bool) -> str | None:
        """The visible text once the leading tag is settled, or None while it may still be open."""
        head = self._head
        stripped = head.lstrip()
        if not stripped and not final:
            return None
        match = _TAG.match(head)
        if match and _OPENERS.get(match.group(1)) == match.group(3):
            word = match.group(2).lower()
            self.emotion = word if word in EMOTIONS else "neutral"
            rest = head[match.end():]
            if not rest and not final:
                return None  # wait for the first visible character (drops the space after the tag)
            self._head = None
            return rest
        if stripped and stripped[0] in _OPENERS and not final and len(stripped) < _TAG_WAIT_CHARS:
            closer = _OPENERS[stripped[0]]
            if closer not in stripped[1:]:
                return None
        self._head = None
        return stripped

    # --- visible text and sentences ----------------------------------------------------------

    def _show(self, delta: str, *, final: bool) -> list:
        text = self._pending + delta
        if not self._shown:
            text = text.lstrip()
        text = _STRAY_TAG.sub("", text)
        cut = len(text)
        if not final:  # hold back a "[..." that may still become a stray tag
            open_at = text.rfind("[")
            if open_at != -1 and "]" not in text[open_at:] and len(text) - open_at <= _TAG_WAIT_CHARS:
                cut = open_at
        out, self._pending = text[:cut], text[cut:]
        events: list = []
        if out:
            self._shown += out
            events.append(TextDelta(out))
        return events + self._sentences()

    def _sentences(self) -> list:
        events = []
        text = self._shown
        i = self._sentence_start
        while i < len(text):
            ch = text[i]
            if ch == "," and self._index == 0 and self.first_clause_min_words and i + 1 < len(text):
                clause = text[self._sentence_start:i + 1].strip()
                if text[i + 1].isspace() and len(clause.split()) >= self.first_clause_min_words:
                    events.append(Sentence(clause, self.emotion, self._index))
                    self._index += 1
                    self._sentence_start = i + 1
            if ch in _ENDERS:
                end = i + 1
                while end < len(text) and text[end] in _ENDERS:
                    end += 1
                if end >= len(text):
                    break  # decide when the next character arrives (or at finish)
                if (text[end].isspace() or ch in _CJK_ENDERS) and not self._is_abbreviation(text, i):
                    sentence = text[self._sentence_start:end].strip()
                    if sentence:
                        events.append(Sentence(sentence, self.emotion, self._index))
                        self._index += 1
                    self._sentence_start = end
                i = end
                continue
            i += 1
        return events

    @staticmethod
    def _is_abbreviation(text: str, dot: int) -> bool:
        if text[dot] != ".":
            return False
        word = re.search(r"([\w.]+)$", text[:dot])
        if not word:
            return False
        return word.group(1).lower() in _ABBREVIATIONS
