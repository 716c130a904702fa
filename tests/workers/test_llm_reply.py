"""The reply parser: emotion tag, visible deltas and sentences, however the reply is split."""

import random
import re

import pytest

from apps.conversations.reply import EMOTIONS, ReplyStream, Sentence, TextDelta


def parse(deltas, **kwargs):
    """Feed `deltas`; return (stream, all events, events seen before finish())."""
    reply = ReplyStream(**kwargs)
    events = []
    for delta in deltas:
        events += reply.feed(delta)
    before = list(events)
    events += reply.finish()
    return reply, events, before


def texts(events, kind):
    return [e.text for e in events if isinstance(e, kind)]


def by_char(text):
    return list(text)


# reply → (emotion, visible text, sentences)
CASES = [
    ("[happy] Hello there. How are you?", "happy", "Hello there. How are you?", ["Hello there.", "How are you?"]),
    ("Hello there.", "neutral", "Hello there.", ["Hello there."]),
    (" [Happy]  Hi!", "happy", "Hi!", ["Hi!"]),
    ("[SAD]Oh.", "sad", "Oh.", ["Oh."]),
    ("(angry) Stop that!", "angry", "Stop that!", ["Stop that!"]),
    ("*surprised* Oh! Really?", "surprised", "Oh! Really?", ["Oh!", "Really?"]),
    ("[emotion: excited] Yes!", "excited", "Yes!", ["Yes!"]),
    ("[ shy ] um, hi.", "shy", "um, hi.", ["um, hi."]),
    ("[thinking]\nLet me see.", "thinking", "Let me see.", ["Let me see."]),
    ("[confused] What do you mean?", "neutral", "What do you mean?", ["What do you mean?"]),
    ("[happy]", "happy", "", []),
    ("", "neutral", "", []),
    ("   ", "neutral", "", []),
    ("[1] is a footnote.", "neutral", "[1] is a footnote.", ["[1] is a footnote."]),
    ("[happy to help] Sure.", "neutral", "[happy to help] Sure.", ["[happy to help] Sure."]),
    ("*waves hand slowly* Hello.", "neutral", "*waves hand slowly* Hello.", ["*waves hand slowly* Hello."]),
    ("[" + "x" * 40, "neutral", "[" + "x" * 40, ["[" + "x" * 40]),
    # stray tags later in the reply disappear, with the space they leave
    ("[happy] Hi. [sad] I miss you.", "happy", "Hi. I miss you.", ["Hi.", "I miss you."]),
    ("I see [sad]. Oh well.", "neutral", "I see. Oh well.", ["I see.", "Oh well."]),
    ("Well[Thinking], maybe.", "neutral", "Well, maybe.", ["Well, maybe."]),
    ("A [sad] [happy] B.", "neutral", "A B.", ["A B."]),
    ("Keep [this] and [sadly] too.", "neutral", "Keep [this] and [sadly] too.", ["Keep [this] and [sadly] too."]),
    # where sentences end
    (
        "Mr. Smith met Dr. Jones on Main St. today.",
        "neutral",
        "Mr. Smith met Dr. Jones on Main St. today.",
        ["Mr. Smith met Dr. Jones on Main St. today."],
    ),
    (
        "Bring fruit, e.g. apples, i.e. red ones, etc. and go.",
        "neutral",
        "Bring fruit, e.g. apples, i.e. red ones, etc. and go.",
        ["Bring fruit, e.g. apples, i.e. red ones, etc. and go."],
    ),
    (
        "I moved to the U.S. in 2019 at 9 a.m. sharp. Then J. R. R. Tolkien. Ask John F. Kennedy. Take vitamin C. Fine.",
        "neutral",
        "I moved to the U.S. in 2019 at 9 a.m. sharp. Then J. R. R. Tolkien. Ask John F. Kennedy. Take vitamin C. Fine.",
        [
            "I moved to the U.S. in 2019 at 9 a.m. sharp.",
            "Then J. R. R. Tolkien.",
            "Ask John F. Kennedy.",
            "Take vitamin C.",
            "Fine.",
        ],
    ),
    ("It costs 3.5 dollars. Cheap!", "neutral", "It costs 3.5 dollars. Cheap!", ["It costs 3.5 dollars.", "Cheap!"]),
    ("Well... I think so.", "neutral", "Well... I think so.", ["Well...", "I think so."]),
    ("Wait…what? No!", "neutral", "Wait…what? No!", ["Wait…what?", "No!"]),
    ("Really?! Wow.", "neutral", "Really?! Wow.", ["Really?!", "Wow."]),
    ('"Really?" she asked. Yes.', "neutral", '"Really?" she asked. Yes.', ['"Really?"', "she asked.", "Yes."]),
    ("[happy] 你好。今天很好！你呢？", "happy", "你好。今天很好！你呢？", ["你好。", "今天很好！", "你呢？"]),
    ("Line one.\nLine two", "neutral", "Line one.\nLine two", ["Line one.", "Line two"]),
]


@pytest.mark.parametrize("reply,emotion,text,sentences", CASES)
@pytest.mark.parametrize("split", ["whole", "chars"])
def test_reply_cases(reply, emotion, text, sentences, split):
    stream, events, _ = parse([reply] if split == "whole" else by_char(reply))
    assert stream.emotion == emotion
    assert stream.text == text
    assert texts(events, Sentence) == sentences
    assert "".join(texts(events, TextDelta)) == text
    assert [e.index for e in events if isinstance(e, Sentence)] == list(range(len(sentences)))
    assert all(e.emotion == emotion for e in events if isinstance(e, Sentence))


@pytest.mark.parametrize(
    "pieces", [["[", "hap", "py]", " Hi."], ["[hap", "py] ", " Hi."], ["  [", "emotion", ":", " sad", "]", "Hi."]]
)
def test_tag_split_across_deltas_is_never_shown(pieces):
    stream, events, _ = parse(pieces)
    assert stream.emotion in {"happy", "sad"}
    assert texts(events, TextDelta) and all("[" not in t and "]" not in t for t in texts(events, TextDelta))
    assert stream.text == "Hi."


def test_text_is_shown_as_soon_as_it_arrives():
    reply = ReplyStream()
    assert reply.feed("[happy]") == []  # a tag is never shown
    assert reply.feed(" Hel") == [TextDelta("Hel")]
    assert reply.feed("lo") == [TextDelta("lo")]
    assert reply.emotion == "happy"


def test_without_a_tag_the_first_word_is_not_held():
    reply = ReplyStream()
    assert reply.feed("Hi") == [TextDelta("Hi")]


def test_an_open_bracket_is_held_only_while_it_may_be_a_tag():
    reply = ReplyStream()
    assert reply.feed("[ha") == []
    assert reply.feed("t is") == [TextDelta("[hat is")]  # two words: not a tag after all
    mid = ReplyStream()
    assert mid.feed("Hi [s") == [TextDelta("Hi")]
    assert mid.feed("o") == [TextDelta(" [so")]  # "[so" cannot become an emotion tag


def test_a_tag_that_never_closes_is_given_up_after_24_chars():
    reply = ReplyStream()
    assert reply.feed("[happy") == []
    held = reply.feed(" " * 30)
    assert held == [TextDelta("[happy")]


def test_a_sentence_is_emitted_when_the_next_character_arrives():
    reply = ReplyStream()
    assert texts(reply.feed("[happy] Hello there."), Sentence) == []  # might be "there.com" or "..."
    assert reply.feed(" ") == [Sentence("Hello there.", "happy", 0)]
    assert texts(reply.feed("Bye"), Sentence) == []
    assert reply.finish() == [Sentence("Bye", "happy", 1)]


def test_ellipsis_is_one_end_not_three():
    reply = ReplyStream()
    events = reply.feed("Hmm.") + reply.feed(".") + reply.feed(".") + reply.feed(" So")
    assert texts(events, Sentence) == ["Hmm..."]


def test_finish_without_trailing_text_adds_no_blank_sentence():
    reply = ReplyStream()
    reply.feed("Hello. ")
    assert texts(reply.finish(), Sentence) == []


def test_first_clause_may_end_at_a_comma_when_asked():
    stream, events, _ = parse(
        by_char("Well, you know, I was thinking, maybe later. Then more, and more."), first_clause_min_words=3
    )
    assert texts(events, Sentence) == ["Well, you know,", "I was thinking, maybe later.", "Then more, and more."]


REPLIES = [
    "[happy] Hello there! I am Nova, your guide... Mr. Lee paid 3.5 credits, e.g. for tea. Anything else?",
    " (Sad)  Oh. [sad] I miss the stars [thinking]. Do you? Maybe…not.",
    '*excited* Wow!! Look at that — a comet!? "Amazing," said Dr. Vega.\nNew line here',
    "[emotion: shy] 你好。我是诺娃！[happy] 很高兴认识你？好",
    "No tag at all, just text [1] with [brackets] and [sadness] inside. End.",
    "[unknown] Leading unknown tag. Then [Angry] a stray one!",
]


@pytest.mark.parametrize("seed", range(25))
@pytest.mark.parametrize("reply", REPLIES)
def test_result_does_not_depend_on_how_the_reply_was_split(reply, seed):
    rng = random.Random(seed)
    pieces, i = [], 0
    while i < len(reply):
        size = rng.randint(1, 8)
        pieces.append(reply[i : i + size])
        i += size
    whole, whole_events, _ = parse([reply])
    split, split_events, _ = parse(pieces)
    assert (split.emotion, split.text) == (whole.emotion, whole.text)
    assert split.emotion in EMOTIONS
    assert [e for e in split_events if isinstance(e, Sentence)] == [e for e in whole_events if isinstance(e, Sentence)]
    shown = "".join(texts(split_events, TextDelta))
    assert shown == split.text
    assert not re.search(r"\[(?:{})\]".format("|".join(EMOTIONS)), shown, re.I)
    sentences = texts(split_events, Sentence)
    joiner = "" if "你" in reply else " "
    assert joiner.join(sentences) == (" ".join(split.text.split()) if joiner else split.text.replace(" ", ""))
