"""Turn a stream of reply text into visible deltas and sentences, with the emotion tag parsed out.

A character may open its reply with an emotion tag ("[happy]", "(happy)", "*happy*",
"[emotion: happy]"); it becomes the message's emotion and is never shown. Unknown or missing
tags mean "neutral". Stray tags of known emotions in square brackets later in the reply are
removed. Sentences are cut where they end so speech (and `response` frames) can start before the
whole reply is written.
"""

import re
from dataclasses import dataclass

EMOTIONS = ("neutral", "happy", "sad", "angry", "surprised", "excited", "shy", "thinking")
_TAG_WAIT_CHARS = 24  # longest opening we hold back while waiting for a tag to close
_OPENERS = {"[": "]", "(": ")", "*": "*"}
_TAG = re.compile(r"^\s*([\[(*])\s*(?:emotion\s*[:=]\s*)?([A-Za-z]+)\s*([\])*])\s*", re.I)
_TAG_PREFIX = re.compile(r"\s*[\[(*]\s*(?:emotion\s*[:=]\s*)?[A-Za-z]*\s*", re.I)  # may still become a tag
_EMOTION_WORDS = "|".join(EMOTIONS)
_STRAY_TAG = re.compile(rf"\[\s*(?:emotion\s*[:=]\s*)?(?:{_EMOTION_WORDS})\s*\]", re.I)
_STRAY_PREFIX = re.compile(r"\[\s*(?:emotion\s*[:=]\s*)?([A-Za-z]*)\s*", re.I)
_ABBREVIATIONS = {"mr", "mrs", "ms", "dr", "st", "prof", "vs", "etc", "e.g", "i.e", "jr", "sr"}
_INITIALS = re.compile(r"[^\W\d_](?:\.[^\W\d_])+")
_ENDERS = ".!?…。！？"
_CJK_ENDERS = "。！？"
_CLOSERS = "\"'”’)]"  # may follow a sentence's end: "Really?" she asked.
_NO_SPACE_BEFORE = ".,!?;:…。！？，"  # a removed stray tag takes the space before these with it


@dataclass(frozen=True)
class TextDelta:
    """Visible reply text, as soon as it is known not to be part of a tag."""

    text: str


@dataclass(frozen=True)
class Sentence:
    """One completed sentence (stripped), numbered from 0, with the reply's emotion."""

    text: str
    emotion: str
    index: int


class ReplyStream:
    """Feed deltas in; get `TextDelta` and `Sentence` events out.

    Concatenated `TextDelta`s equal `.text`; the sentences, joined with single spaces, equal
    `.text` with its whitespace normalised (CJK sentences have no space between them). The result
    does not depend on how the reply was split into deltas.
    """

    def __init__(self, *, first_clause_min_words: int = 0) -> None:
        """With `first_clause_min_words`, the first sentence may end at a comma after that many words
        (so speech can start sooner); later ones are whole sentences."""
        self.first_clause_min_words = first_clause_min_words
        self.emotion = "neutral"
        self._head: str | None = ""  # text held while a leading tag may still be open; None once decided
        self._raw = ""  # visible text not yet committed (a possible stray tag at its end)
        self._text = ""  # committed visible text; its trailing whitespace is not shown yet
        self._shown = 0  # chars of _text sent as TextDelta
        self._drop_space = False  # a stray tag was removed after a space: drop the space that follows
        self._sentence_start = 0
        self._index = 0

    @property
    def text(self) -> str:
        return self._text.strip()

    def feed(self, delta: str) -> list:
        if self._head is not None:
            self._head += delta
            visible = self._parse_head(final=False)
            if visible is None:
                return []
            delta = visible
        return self._visible(delta, final=False)

    def finish(self) -> list:
        visible = ""
        if self._head is not None:
            visible = self._parse_head(final=True) or ""
        events = self._visible(visible, final=True)
        tail = self._text[self._sentence_start :].strip()
        if tail:
            events.append(Sentence(tail, self.emotion, self._index))
            self._index += 1
            self._sentence_start = len(self._text)
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
            rest = head[match.end() :]
            if not rest and not final:
                return None  # wait for the first visible character (drops the space after the tag)
            self._head = None
            return rest
        if not final and len(stripped) < _TAG_WAIT_CHARS and _TAG_PREFIX.fullmatch(head):
            return None
        self._head = None
        return stripped

    # --- visible text -----------------------------------------------------------------------

    def _visible(self, delta: str, *, final: bool) -> list:
        raw = self._raw + delta
        hold = len(raw) if final else _open_stray_tag(raw)
        self._raw = raw[hold:]
        self._commit(raw[:hold])
        if final:
            self._text = self._text.rstrip()
        end = len(self._text.rstrip())  # trailing spaces wait: a stray tag after them may take them
        events: list = []
        if end > self._shown:
            events.append(TextDelta(self._text[self._shown : end]))
            self._shown = end
        return events + self._sentences()

    def _commit(self, text: str) -> None:
        """Append decided text, with stray emotion tags (and the space they leave) removed."""
        while text:
            match = _STRAY_TAG.search(text)
            self._append(text[: match.start()] if match else text)
            if not match:
                return
            if not self._text or self._text[-1].isspace():
                self._drop_space = True
            text = text[match.end() :]

    def _append(self, piece: str) -> None:
        if self._drop_space or not self._text:
            piece = piece.lstrip()
            if not piece:
                return
            if self._drop_space and piece[0] in _NO_SPACE_BEFORE:
                self._text = self._text.rstrip()  # never shown, so safe to take back
            self._drop_space = False
        self._text += piece

    # --- sentences --------------------------------------------------------------------------

    def _sentences(self) -> list:
        events = []
        text = self._text
        i = self._sentence_start
        while i < len(text):
            ch = text[i]
            if ch == "," and self._index == 0 and self.first_clause_min_words and i + 1 < len(text):
                clause = text[self._sentence_start : i + 1].strip()
                if text[i + 1].isspace() and len(clause.split()) >= self.first_clause_min_words:
                    events.append(Sentence(clause, self.emotion, self._index))
                    self._index += 1
                    self._sentence_start = i + 1
            if ch in _ENDERS:
                end = i + 1
                while end < len(text) and text[end] in _ENDERS:
                    end += 1
                while end < len(text) and text[end] in _CLOSERS:
                    end += 1
                if end >= len(text):
                    break  # decide when the next character arrives (or at finish)
                if (text[end].isspace() or ch in _CJK_ENDERS) and not _is_abbreviation(text, i):
                    sentence = text[self._sentence_start : end].strip()
                    if sentence:
                        events.append(Sentence(sentence, self.emotion, self._index))
                        self._index += 1
                    self._sentence_start = end
                i = end
                continue
            i += 1
        return events


def _open_stray_tag(text: str) -> int:
    """Where a trailing "[..." that may still become a stray emotion tag starts (len(text) if none)."""
    start = text.rfind("[")
    if start == -1 or "]" in text[start:] or len(text) - start > _TAG_WAIT_CHARS:
        return len(text)
    match = _STRAY_PREFIX.fullmatch(text, start)
    if not match:
        return len(text)
    word = match.group(1).lower()
    fragment = text[start:].rstrip()
    if word and fragment.endswith(match.group(1)):  # still typing the word
        possible = any(e.startswith(word) for e in EMOTIONS) or "emotion".startswith(word)
    else:  # the word is complete (or absent): only "]" may follow
        possible = not word or word in EMOTIONS or word == "emotion"
    return start if possible else len(text)


def _is_abbreviation(text: str, end: int) -> bool:
    if text[end] != ".":
        return False
    word = re.search(r"([\w.]+)$", text[:end])
    if not word:
        return False
    word = word.group(1)
    if word.lower() in _ABBREVIATIONS or _INITIALS.fullmatch(word):  # "U.S.", "a.m."
        return True
    if len(word) != 1 or not word.isupper():
        return False
    # One capital: an initial after a name or another initial ("John F. Kennedy", "J. R. R."), else a
    # sentence may end there ("vitamin C. Then"); "Plan B. Next" stays one unit, which only costs a pause.
    before = text[: end - 1].split()
    return bool(before) and (before[-1][0].isupper() or bool(re.fullmatch(r"[^\W\d_]\.", before[-1])))
