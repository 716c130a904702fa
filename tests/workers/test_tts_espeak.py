"""espeak-ng voices through the real espeak-ng (Debian 12's 1.51): they speak, and only the text."""

import subprocess
from pathlib import Path

import numpy as np
import pytest

from workers.llm.engines import EngineConfigError, EngineError
from workers.tts.engine import PROSODY, EspeakEngine, TtsEngines, VoiceSpec


def seconds(audio: np.ndarray, rate: int) -> float:
    return len(audio) / rate


def spoken(text: str, **prosody) -> tuple[np.ndarray, int]:
    engine = EspeakEngine("en")
    audio = np.concatenate(list(engine.synthesize(text, **{"speed": 1.0, "variation": 1.0, **prosody})))
    return audio, engine.sample_rate


def test_espeak_voice_speaks_a_sentence():
    audio, rate = spoken("Hello there, I am your guide to the stars tonight.")
    assert audio.dtype == np.int16 and rate == 22050
    assert 1.5 < seconds(audio, rate) < 6, seconds(audio, rate)  # ten words of speech
    assert np.abs(audio.astype(np.int32)).max() > 5000  # sound, not silence


@pytest.mark.parametrize("emotion", sorted(PROSODY))
def test_every_emotion_gives_audio(emotion):
    audio, rate = TtsEngines().synthesize("How are you today?", VoiceSpec(engine="espeak", language="en"), emotion)
    assert seconds(audio, rate) > 0.5


def test_faster_voice_is_shorter():
    slow, rate = spoken("One two three four five six seven eight nine ten.", speed=0.8)
    fast, _ = spoken("One two three four five six seven eight nine ten.", speed=1.4)
    assert seconds(fast, rate) < 0.8 * seconds(slow, rate)


@pytest.mark.parametrize("path", ["/etc/passwd", "/etc/services"])
def test_text_that_looks_like_an_option_is_spoken_not_obeyed(path):
    """A reply starting with `-f <file>` must not make espeak-ng read that file aloud."""
    text = f"-f {path}"
    audio, rate = spoken(text)
    # what espeak-ng would have said had it read the file: far longer than the few words
    as_file = subprocess.run(["espeak-ng", "--stdout", "-v", "en", "-f", path], capture_output=True, check=True)
    file_seconds = (len(as_file.stdout) - 44) / 2 / 22050
    assert Path(path).stat().st_size > 500 and file_seconds > 20
    assert 0.5 < seconds(audio, rate) < 4, seconds(audio, rate)
    # and it is the same audio as the words said without the dash
    plain, _ = spoken(f"f {path}")
    assert abs(seconds(audio, rate) - seconds(plain, rate)) < 0.5


def test_a_voice_name_that_is_an_option_is_refused():
    with pytest.raises(EngineConfigError):
        EspeakEngine("--stdout")


def test_an_unknown_voice_is_a_clear_engine_error():
    with pytest.raises(EngineError, match="voice does not exist"):
        list(EspeakEngine("zz-nonexistent").synthesize("Hello.", speed=1, variation=1))
