"""The short encoder window (ASR_WINDOW_S): the same words as Whisper's 30 s window, and the standard
pass whenever the short one would be wrong or cannot apply. Real Whisper tiny.en on real speech."""

import functools

import numpy as np
import pytest

from tests.speech import alsa_clip, audioeval_clip, piper_says, silence, words
from workers.asr.engine import AsrEngine, spoken
from workers.audio import pcm_to_float

LINES = [
    "Can you tell me something about Mars?",
    "I have a dog called Biscuit and he loves the beach.",
    "Please remind me to call my sister Lena tomorrow morning.",
]


@functools.cache
def engine(window_s: float) -> AsrEngine:
    asr = AsrEngine(window_s=window_s)
    asr.warm()
    return asr


def clips() -> list[bytes]:
    recorded = [audioeval_clip(n)[0] for n in ("hello_world", "quick_brown_fox", "counting")]
    recorded += [alsa_clip(n)[0] for n in ("Front_Center", "Rear_Left", "Side_Right")]
    return recorded + [piper_says(line) for line in LINES]


def test_short_window_hears_the_same_words_as_the_standard_one():
    short, standard = engine(10.0), engine(0.0)
    before = short.short_windows
    for pcm in clips():
        heard = short.transcribe(pcm)
        assert words(heard.text) == words(standard.transcribe(pcm).text), heard
    assert short.short_windows - before == len(clips())  # none needed the standard pass
    assert standard.short_windows == 0


def test_a_repetition_loop_in_a_tight_window_is_decoded_again_the_standard_way():
    """Counting from one to ten (3 s) in a 5 s window loops ("1-2-...-10. 1-2-3-4-4-..."); the result
    is the standard pass's, not the loop."""
    tight = AsrEngine(window_s=5.0)
    pcm = audioeval_clip("counting")[0]
    heard = tight.transcribe(pcm)
    assert tight.full_windows == 1
    assert words(heard.text) == words(engine(0.0).transcribe(pcm).text)


def test_clips_past_the_window_and_silence():
    short = engine(10.0)
    long_line = piper_says(" ".join(LINES * 2))
    assert len(long_line) / 32000 > 9  # with the second to spare: a 20 s window
    before = short.short_windows
    assert "biscuit" in words(short.transcribe(long_line).text)
    assert short.short_windows == before + 1
    thirty = silence(25.0) + piper_says(LINES[0])  # needs the full 30 s window
    before_full = short.full_windows
    assert "mars" in words(short.transcribe(thirty).text)
    assert short.full_windows == before_full + 1
    assert short.transcribe(silence(2.0)).text == ""


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        (".", False),
        ("...", False),
        (" ♪ ", False),
        ("", False),
        ("42", True),
        ("日本語です。", True),
        ("Привет.", True),
    ],
)
def test_a_transcript_is_kept_only_with_a_word(text, kept):
    assert spoken(text) == (text if kept else "")


def test_a_press_without_words_gives_no_transcript():
    """A second of faint hiss (a button pressed and let go without a word): Whisper writes "." for it on
    some CPUs and nothing on others (int8 kernels differ), neither a message to answer (the socket says
    no_speech)."""
    hiss = np.random.default_rng(0).normal(0, 100, 60_800)[-16000:].astype(np.int16).tobytes()  # (found by trying)
    short = engine(10.0)
    assert short._short_window(pcm_to_float(hiss)) in (".", "")
    assert short.transcribe(hiss).text == ""


@pytest.mark.parametrize("window_s", [0.0, 10.0])
def test_window_setting_reaches_the_engine(settings, window_s):
    settings.ASR_WINDOW_S = window_s
    assert AsrEngine.from_settings().window_s == window_s
