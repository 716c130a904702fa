"""A character with an espeak-ng voice answers a call in that voice (real Whisper, real espeak-ng)."""

import asyncio
import base64

import numpy as np
import pytest

from apps.characters.models import Voice
from tests.realtime.client import connected_socket, dumps, send_raw, types
from tests.speech import audioeval_clip, silence, words
from workers.audio import resample
from workers.tts.engine import TtsEngines, VoiceSpec

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.asyncio,
    pytest.mark.usefixtures("llm_worker", "voice_worker"),
]


async def frames_until(comm, kind: str, timeout: float = 30) -> list[dict]:
    frames = []
    while not frames or frames[-1]["type"] != kind:
        frames.append(await comm.receive_json_from(timeout=timeout))
    return frames


async def stream_realtime(comm, pcm: bytes, frame_ms: int = 20):
    step = 16 * frame_ms * 2
    for i in range(0, len(pcm), step):
        chunk = base64.b64encode(pcm[i : i + step]).decode()
        await comm.send_json_to({"type": "voice_call_audio_chunk", "audio_base64": chunk})
        await asyncio.sleep(frame_ms / 1000)


def units_of(frames) -> list[tuple[str, str, bytes]]:
    """(text, emotion, pcm) of each spoken unit, in the order the socket played them."""
    units = []
    for frame in frames:
        if frame["type"] == "tts_start":
            units.append((frame["text"], frame["emotion"], bytearray()))
        elif frame["type"] == "audio_chunk":
            assert frame["audio_format"] == "pcm" and frame["audio_sample_rate"] == 16000
            units[-1][2].extend(base64.b64decode(frame["audio_base64"]))
    return [(text, emotion, bytes(pcm)) for text, emotion, pcm in units]


async def test_call_with_an_espeak_voice_is_answered_in_that_voice(api_key, character):
    spec = {"engine": "espeak", "model": "", "speaker": "en-us", "language": "en", "speed": 1.1}
    character.voice = await Voice.objects.acreate(name="Robot", **spec)
    await character.asave()
    speech, transcript = audioeval_clip("hello_world")
    comm = await connected_socket(api_key)
    assert await send_raw(comm, dumps({"type": "agent_mode_start"})) == {"type": "voice_call_listening"}
    sender = asyncio.create_task(stream_realtime(comm, silence(0.5) + speech + silence(1.0)))
    frames = await frames_until(comm, "turn_end")
    await sender
    kinds = types(frames)
    assert "error" not in kinds, frames
    assert words(next(f["text"] for f in frames if f["type"] == "asr_end")) == words(transcript)
    assert frames[-1]["status"] == "complete"
    units = units_of(frames)
    assert len(units) >= 2 and " ".join(text for text, _, _ in units).endswith("I am Nova. Anything else?")
    engines = TtsEngines()
    for text, emotion, pcm in units:
        assert len(pcm) / 2 / 16000 > 0.12 * len(text.split()), text  # speech, not a blip
        # espeak-ng is deterministic: the call carried exactly what this voice says for the unit
        audio, rate = engines.synthesize(text, VoiceSpec(**spec), emotion)
        assert pcm == resample(audio, rate, 16000).tobytes(), text
    assert np.abs(np.frombuffer(b"".join(u[2] for u in units), dtype=np.int16).astype(np.int32)).max() > 1000
    assert (await comm.receive_json_from(timeout=5)) == {"type": "voice_call_listening"}
    await comm.disconnect()
