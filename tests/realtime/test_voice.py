"""Voice turns over /ws with the real ASR (Whisper tiny.en) and TTS (Piper) workers and real speech.

The LLM worker here is the deterministic engine, so the reply text is known: "You said: X. I am
Nova. Anything else?" for a transcript X. tests/e2e has the same paths with SmolLM2.
"""

import asyncio
import base64
import time

import numpy as np
import pytest
from asgiref.sync import sync_to_async
from django.test import override_settings

from apps.conversations.models import Message
from apps.realtime import services, voice
from tests.realtime.client import connected_socket, dumps, send_raw, types
from tests.speech import alsa_clip, audioeval_clip, piper_says, silence, words
from workers.audio import encode

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.asyncio,
    pytest.mark.usefixtures("llm_worker", "voice_worker"),
]


def b64(pcm: bytes) -> str:
    return base64.b64encode(pcm).decode()


async def frames_until(comm, kind: str, timeout: float = 30) -> list[dict]:
    frames = []
    while not frames or frames[-1]["type"] != kind:
        frames.append(await comm.receive_json_from(timeout=timeout))
    return frames


def audio_of(frames, rate=16000) -> np.ndarray:
    chunks = [f for f in frames if f["type"] == "audio_chunk"]
    assert all(c["audio_format"] == "pcm" and c["audio_sample_rate"] == rate for c in chunks)
    return np.frombuffer(b"".join(base64.b64decode(c["audio_base64"]) for c in chunks), dtype=np.int16)


def assert_spoken_turn(frames, expected_words: list[str]) -> str:
    kinds = types(frames)
    # in a call a partial transcript may come first, while the user is still talking
    settled = [f["type"] for f in frames if not (f["type"] == "transcription" and f["is_partial"])]
    assert settled[:1] == ["asr_start"], kinds
    final = next(f for f in frames if f["type"] == "transcription" and not f["is_partial"])
    asr_end = next(f for f in frames if f["type"] == "asr_end")
    assert final["text"] == asr_end["text"]
    heard = words(asr_end["text"])
    assert sum(w in heard for w in expected_words) >= len(expected_words) - 1, (heard, expected_words)
    order = [k for k in kinds if k in ("asr_end", "thinking", "llm_start", "llm_end", "audio_end", "turn_end")]
    assert order == ["asr_end", "thinking", "llm_start", "llm_end", "audio_end", "turn_end"], kinds
    # every unit: tts_start, then its response, then its audio
    units = [i for i, k in enumerate(kinds) if k == "tts_start"]
    assert len(units) >= 2
    for i in units:
        assert kinds[i + 1] == "response" and kinds[i + 2] == "audio_chunk"
        assert frames[i]["text"] == frames[i + 1]["content"]
    reply = " ".join(f["content"] for f in frames if f["type"] == "response")
    assert reply.endswith("I am Nova. Anything else?")
    pcm = audio_of(frames)
    seconds = len(pcm) / 16000
    assert 0.7 * len(reply.split()) > seconds > 0.12 * len(reply.split()), (seconds, reply)  # speech, not noise
    assert np.abs(pcm.astype(np.int32)).max() > 1000
    assert frames[-1]["status"] == "complete"
    return reply


async def test_whole_utterance_recorded_speech_to_spoken_reply(api_key, character):
    pcm, transcript = audioeval_clip("quick_brown_fox")
    comm = await connected_socket(api_key)
    await comm.send_json_to({"type": "audio_message", "audio_base64": b64(pcm)})
    frames = await frames_until(comm, "turn_end")
    reply = assert_spoken_turn(frames, words(transcript))
    user, assistant = await sync_to_async(list)(Message.objects.exclude(content="Hi! I'm Nova.").order_by("created_at"))
    assert user.role == "user" and words(user.content) == words(
        next(f["text"] for f in frames if f["type"] == "asr_end")
    )
    assert user.timings["asr_ms"] > 0
    assert assistant.content == reply and assistant.status == "complete"
    for stage in ("first_token_at_ms", "first_unit_at_ms", "llm_end_at_ms", "first_audio_at_ms", "last_audio_at_ms"):
        assert assistant.timings[stage] > 0, assistant.timings
    assert assistant.timings["first_token_at_ms"] <= assistant.timings["llm_end_at_ms"]
    assert assistant.timings["first_audio_at_ms"] <= assistant.timings["last_audio_at_ms"]
    await comm.disconnect()


async def test_push_to_talk_stream_with_binary_and_base64_chunks(api_key, character):
    pcm, _ = alsa_clip("Front_Center")
    comm = await connected_socket(api_key, output_sample_rate=24000)
    assert await send_raw(comm, dumps({"type": "audio_stream_start"})) == {"type": "audio_stream_started"}
    for i in range(0, len(pcm), 3200):
        if i // 3200 % 2:
            await comm.send_to(bytes_data=pcm[i : i + 3200])
        else:
            await comm.send_json_to({"type": "audio_stream_chunk", "audio_base64": b64(pcm[i : i + 3200])})
    await comm.send_json_to({"type": "audio_stream_end"})
    frames = await frames_until(comm, "turn_end")
    assert {"front", "center"} <= set(words(next(f["text"] for f in frames if f["type"] == "asr_end")))
    assert len(audio_of(frames, rate=24000)) > 24000  # over a second of speech at the asked rate
    await comm.disconnect()


@pytest.mark.parametrize("fmt", ["ogg", "mp3"])
async def test_compressed_audio_files_are_accepted(api_key, character, fmt):
    pcm, transcript = audioeval_clip("hello_world")
    comm = await connected_socket(api_key)
    await comm.send_json_to({"type": "audio_message", "audio_base64": b64(encode(pcm, 16000, fmt))})
    frames = await frames_until(comm, "turn_end")
    assert words(next(f["text"] for f in frames if f["type"] == "asr_end")) == words(transcript)
    await comm.disconnect()


async def test_the_first_sentence_goes_to_speech_while_the_reply_is_written(api_key, character):
    comm = await connected_socket(api_key)
    line = await sync_to_async(piper_says)(
        # "slowly": the scripted engine writes 200 ms a word (~5 s in all), the first unit is ready after ~1 s
        "Please answer slowly. Take your time with every single word, because I really like to listen to you."
    )
    await comm.send_json_to({"type": "audio_message", "audio_base64": b64(line)})
    frames = await frames_until(comm, "turn_end")
    assert "slowly" in words(next(f["text"] for f in frames if f["type"] == "asr_end"))
    first_unit = next(f["text"] for f in frames if f["type"] == "tts_start")
    assert first_unit.startswith("You said:") and len(first_unit.split()) <= 6  # a short first unit speaks early
    # Handed to TTS while the reply was still being written (the server's clock: whether its audio also
    # reaches the client first is Piper's speed on the machine, not the pipeline's).
    saved = await Message.objects.aget(pk=frames[-1]["message_id"])
    assert 0 < saved.timings["first_unit_at_ms"] < saved.timings["llm_end_at_ms"] - 2000, saved.timings
    await comm.disconnect()


async def stream_realtime(comm, pcm: bytes, frame_ms: int = 20):
    step = 16 * frame_ms * 2
    for i in range(0, len(pcm), step):
        await comm.send_json_to({"type": "voice_call_audio_chunk", "audio_base64": b64(pcm[i : i + step])})
        await asyncio.sleep(frame_ms / 1000)


async def test_hands_free_call_streamed_in_real_time(api_key, character, monkeypatch):
    monkeypatch.setattr(voice, "_PARTIAL_WAIT_S", 30)  # the partial asked for at the pause, however slow
    speech, transcript = audioeval_clip("hello_world")
    comm = await connected_socket(api_key)
    assert await send_raw(comm, dumps({"type": "agent_mode_start"})) == {"type": "voice_call_listening"}
    sender = asyncio.create_task(stream_realtime(comm, silence(0.5) + speech + silence(1.0)))
    frames = await frames_until(comm, "turn_end")
    await sender
    assert_spoken_turn(frames, words(transcript))
    assert (await comm.receive_json_from(timeout=5)) == {"type": "voice_call_listening"}
    # the partial asked for when the speech paused covered it all: no second ASR pass
    user = await Message.objects.aget(role="user", content=next(f["text"] for f in frames if f["type"] == "asr_end"))
    assert user.timings["asr_from_partial"] is True
    await comm.disconnect()


def slow_vad_thread(monkeypatch, seconds: float) -> list[int]:
    """Each trip to the VAD's thread takes `seconds` more (a busy process); returns the frames of each trip."""
    import apps.realtime.vad as vad_module

    executor, trips = vad_module._thread(), []

    class Busy:
        def submit(self, fn, taken):
            trips.append(len(taken))  # frames in this trip

            def slow():
                time.sleep(seconds)
                return fn(taken)

            return executor.submit(slow)

    monkeypatch.setattr(vad_module, "_thread", lambda: Busy())
    return trips


async def test_a_call_whose_vad_is_slow_takes_the_frames_that_waited_in_one_trip(api_key, character, monkeypatch):
    """A busy process (here: each trip to the VAD's thread takes 150 ms, 7.5 frames' worth) must not
    make a call fall behind real time: the frames that came meanwhile go through the model together."""
    monkeypatch.setattr(voice, "_PARTIAL_WAIT_S", 30)
    trips = slow_vad_thread(monkeypatch, 0.15)
    speech, transcript = audioeval_clip("hello_world")
    comm = await connected_socket(api_key)
    assert await send_raw(comm, dumps({"type": "voice_call_start"})) == {"type": "voice_call_listening"}
    audio = silence(0.5) + speech + silence(1.0)
    started = time.monotonic()
    sender = asyncio.create_task(stream_realtime(comm, audio))
    frames = await frames_until(comm, "asr_start")
    heard_after = time.monotonic() - started
    await sender
    frames += await frames_until(comm, "turn_end")
    assert_spoken_turn(frames, words(transcript))
    loud_frames = len(speech) // 640
    assert sum(trips) <= loud_frames + 10 and len(trips) <= loud_frames / 4, trips  # several frames a trip
    # heard within the audio's own length and the VAD's silence, plus a trip or two: not frames x 150 ms
    assert heard_after < len(audio) / 32000 + 1.5, heard_after
    await comm.disconnect()


async def test_hanging_up_drops_the_call_frames_still_waiting_for_the_vad(api_key, character, monkeypatch, caplog):
    """Frames queued behind a slow VAD when the caller hangs up are not heard: no turn starts for a
    socket that is gone, and nothing fails trying to tell it."""
    trips = slow_vad_thread(monkeypatch, 0.3)
    speech, _ = audioeval_clip("hello_world")
    comm = await connected_socket(api_key)
    assert await send_raw(comm, dumps({"type": "voice_call_start"})) == {"type": "voice_call_listening"}
    audio = silence(0.3) + speech + silence(1.0)
    for i in range(0, len(audio), 640):  # all at once: most of it waits in the call's inbox
        await comm.send_to(bytes_data=audio[i : i + 640])
    await asyncio.sleep(0.1)
    await comm.disconnect()
    await asyncio.sleep(1.5)  # the trip in flight comes back; the frames after it must not be heard
    assert len(trips) == 1, trips
    assert not await Message.objects.filter(role="user").aexists()
    assert "internal error" not in caplog.text


async def push_to_talk(comm, pcm: bytes, chunk_ms: int = 100, hold_until=None) -> list[dict]:
    """Hold the button: stream `pcm` in real time, let go; returns every frame until `turn_end`.

    With `hold_until(frames)`, the user keeps holding it in silence until that is true of the frames
    so far (at most 30 s): a test then waits on what the server said, not on the machine's speed.
    The frames that came while the user was still talking are marked with `"_during": True`.
    """
    await comm.send_json_to({"type": "audio_stream_start"})
    assert (await comm.receive_json_from()) == {"type": "audio_stream_started"}
    step, released, frames = 32 * chunk_ms, asyncio.Event(), []

    async def talk():
        for i in range(0, len(pcm), step):
            await comm.send_to(bytes_data=pcm[i : i + step])
            await asyncio.sleep(chunk_ms / 1000)
        held_until = time.monotonic() + 30
        while hold_until is not None and not hold_until(frames) and time.monotonic() < held_until:
            await comm.send_to(bytes_data=bytes(step))
            await asyncio.sleep(chunk_ms / 1000)
        released.set()
        await comm.send_json_to({"type": "audio_stream_end"})

    talker = asyncio.create_task(talk())
    while not frames or frames[-1]["type"] != "turn_end":
        frame = await comm.receive_json_from(timeout=30)
        frames.append({**frame, "_during": True} if not released.is_set() else frame)
    await talker
    return frames


@override_settings(ASR_PARTIAL_INTERVAL_MS=1000)
async def test_push_to_talk_shows_partial_transcripts_while_the_user_speaks(api_key, character):
    speech = await sync_to_async(piper_says)("I would like to hear a story about a dragon and a small brave knight.")
    comm = await connected_socket(api_key)

    def heard_all(frames) -> bool:  # partials during the speech, then one at the pause covering it
        partials = [f for f in frames if f["type"] == "transcription" and f["is_partial"]]
        return len(partials) >= 2 and words(partials[-1]["text"])[-1:] in (["knight"], ["night"])  # (tiny.en's)

    frames = await push_to_talk(comm, speech + silence(1.2), hold_until=heard_all)  # stops talking, lets go
    partials = [f for f in frames if f["type"] == "transcription" and f["is_partial"]]
    assert len(partials) >= 2 and all(f.get("_during") for f in partials), types(frames)
    assert len(words(partials[0]["text"])) < len(words(partials[-1]["text"]))  # they grow as the user talks
    after = [f for f in frames if not f.get("_during")]
    assert_spoken_turn(after, ["dragon", "small", "brave", "knight"])
    final = next(f["text"] for f in after if f["type"] == "asr_end")
    user = await Message.objects.aget(role="user", content=final)
    assert user.timings["asr_from_partial"] is True  # the partial asked for at the pause was the whole of it
    await comm.disconnect()


async def test_releasing_mid_speech_transcribes_the_whole_utterance_again(api_key, character):
    speech = await sync_to_async(piper_says)("Tell me about the moon and the stars and the sun.")
    comm = await connected_socket(api_key)
    frames = await push_to_talk(comm, speech[: len(speech) * 3 // 4])  # let go while still talking
    final = next(f["text"] for f in frames if f["type"] == "asr_end")
    assert {"moon", "stars"} <= set(words(final))
    user = await Message.objects.aget(role="user", content=final)
    assert user.timings["asr_ms"] > 0 and "asr_from_partial" not in user.timings
    await comm.disconnect()


async def test_a_partial_that_never_comes_back_does_not_stall_the_turn(api_key, character, monkeypatch):
    monkeypatch.setattr(services, "partial_request", lambda **kwargs: None)  # its job is lost
    monkeypatch.setattr(voice, "_PARTIAL_WAIT_S", 0.5)
    speech = await sync_to_async(piper_says)("Hello there.")
    comm = await connected_socket(api_key)
    frames = await push_to_talk(comm, speech + silence(0.5))
    assert {"hello", "there"} <= set(words(next(f["text"] for f in frames if f["type"] == "asr_end")))
    assert frames[-1]["status"] == "complete"
    await comm.disconnect()


@override_settings(ASR_PARTIALS=False)
async def test_no_partials_when_turned_off(api_key, character):
    speech = await sync_to_async(piper_says)("I would like to hear a story about a dragon.")
    comm = await connected_socket(api_key)
    frames = await push_to_talk(comm, speech + silence(0.5))
    assert [f for f in frames if f["type"] == "transcription" and f["is_partial"]] == []
    assert "dragon" in words(next(f["text"] for f in frames if f["type"] == "asr_end"))
    await comm.disconnect()


async def test_barge_in_stops_the_reply_and_keeps_what_was_said(api_key, character):
    # "at length": ~9 s of speech, still playing after its last audio was sent on a slow machine too
    ask = await sync_to_async(piper_says)("Please answer slow and at length.")
    interruption = (await sync_to_async(audioeval_clip)("hello_world"))[0]
    comm = await connected_socket(api_key)
    await comm.send_json_to({"type": "voice_call_start"})
    assert (await comm.receive_json_from()) == {"type": "voice_call_listening"}
    await stream_realtime(comm, silence(0.3) + ask + silence(0.7))
    first = await frames_until(comm, "turn_end")  # all audio sent; the client is still playing it
    first_unit = next(f for f in first if f["type"] == "tts_start")["text"]
    listening = await comm.receive_json_from(timeout=5)
    assert listening == {"type": "voice_call_listening"}
    sender = asyncio.create_task(stream_realtime(comm, interruption + silence(1.0)))  # the user talks over it
    frames = await frames_until(comm, "interrupted")
    assert types(frames) == ["interrupted"]  # within the detection window, nothing else came first
    new_turn = await frames_until(comm, "turn_end")
    await sender
    assert "hello" in words(next(f["text"] for f in new_turn if f["type"] == "asr_end"))
    saved = await Message.objects.aget(pk=first[-1]["message_id"])
    assert saved.status == "interrupted"
    assert saved.content.startswith(first_unit)
    assert "Anything else?" not in saved.content  # only what had been heard
    assert saved.timings["interrupted_at_ms"] > saved.timings["first_audio_at_ms"]
    await comm.disconnect()


async def test_barge_in_while_the_reply_is_being_written_cancels_the_jobs(api_key, character):
    # "slowly" and "at length": 200 ms a word for ~45 words, so the user talks while it is written
    ask = await sync_to_async(piper_says)("Tell me a long story at length and very slowly please.")
    interruption = (await sync_to_async(audioeval_clip)("hello_world"))[0]
    comm = await connected_socket(api_key)
    await comm.send_json_to({"type": "voice_call_start"})
    await comm.receive_json_from()
    await stream_realtime(comm, silence(0.3) + ask + silence(0.6))
    await frames_until(comm, "llm_start")
    sender = asyncio.create_task(stream_realtime(comm, interruption + silence(1.0)))
    frames = await frames_until(comm, "turn_end")
    assert types(frames)[-2:] == ["interrupted", "turn_end"] and frames[-1]["status"] == "interrupted"
    assert "llm_end" not in types(frames)
    stopped = frames[-1]["message_id"]
    new_turn = await frames_until(comm, "turn_end")
    await sender
    assert new_turn[-1]["status"] == "complete"
    assert all(f.get("message_id") != stopped for f in new_turn)
    saved = await Message.objects.aget(pk=stopped)
    assert saved.status == "interrupted"
    for _ in range(50):  # the LLM job records when it let go of the cancelled turn
        if "llm_stop_ms" in saved.timings:
            break
        await asyncio.sleep(0.1)
        await saved.arefresh_from_db()
    assert saved.timings["llm_stop_ms"] >= 0
    await comm.disconnect()


@pytest.mark.parametrize(
    "frame, code",
    [
        ({"type": "audio_message", "audio_base64": "%%%not base64"}, "invalid_audio"),
        ({"type": "audio_message", "audio_base64": b64(b"\x01\x02\x03")}, "invalid_audio"),
        ({"type": "audio_message", "audio_base64": ""}, "empty_audio"),
        ({"type": "audio_message", "audio_base64": b64(b"RIFF" + b"\x00garbage" * 50)}, "corrupt_audio"),
        ({"type": "audio_message", "audio_base64": b64(b"OggS" + bytes(range(256)) * 4)}, "corrupt_audio"),
        ({"type": "audio_stream_chunk", "audio_base64": b64(silence(0.1))}, "no_stream"),
        ({"type": "audio_stream_end"}, "no_stream"),
        ({"type": "voice_call_audio_chunk", "audio_base64": b64(silence(0.1))}, "no_call"),
        ({"type": "voice_call_stop"}, "no_call"),
    ],
)
async def test_bad_audio_gets_an_error_and_the_socket_stays_usable(api_key, character, frame, code):
    comm = await connected_socket(api_key)
    reply = await send_raw(comm, dumps(frame))
    assert (reply["type"], reply["code"]) == ("error", code), reply
    assert await send_raw(comm, dumps({"type": "ping"})) == {"type": "pong"}
    await comm.disconnect()


async def test_binary_outside_a_stream_and_odd_binary(api_key, character):
    comm = await connected_socket(api_key)
    await comm.send_to(bytes_data=silence(0.1))
    assert (await comm.receive_json_from())["code"] == "binary_not_expected"
    await comm.send_json_to({"type": "audio_stream_start"})
    await comm.receive_json_from()
    await comm.send_to(bytes_data=b"\x00\x01\x02")
    assert (await comm.receive_json_from())["code"] == "invalid_audio"
    await comm.disconnect()


async def test_silence_is_no_speech_and_the_turn_ends(api_key, character):
    comm = await connected_socket(api_key)
    await comm.send_json_to({"type": "audio_message", "audio_base64": b64(silence(1.0))})
    frames = await frames_until(comm, "turn_end")
    assert [f["code"] for f in frames if f["type"] == "error"] == ["no_speech"]
    assert frames[-1]["status"] == "failed"
    assert await send_raw(comm, dumps({"type": "ping"})) == {"type": "pong"}


async def test_limits_chunk_size_utterance_length_and_rate(api_key, character):
    comm = await connected_socket(api_key)
    await comm.send_json_to({"type": "audio_stream_start"})
    await comm.receive_json_from()
    with override_settings(AUDIO_MAX_CHUNK_BYTES=1000):
        reply = await send_raw(comm, dumps({"type": "audio_stream_chunk", "audio_base64": b64(silence(0.1))}))
    assert reply["code"] == "chunk_too_large"
    with override_settings(AUDIO_MAX_UTTERANCE_S=0.5):
        await comm.send_json_to({"type": "audio_stream_chunk", "audio_base64": b64(silence(0.4))})
        reply = await send_raw(comm, dumps({"type": "audio_stream_chunk", "audio_base64": b64(silence(0.4))}))
        assert reply["code"] == "utterance_too_long"
        reply = await send_raw(comm, dumps({"type": "audio_message", "audio_base64": b64(silence(0.6))}))
        assert reply["code"] == "utterance_too_long"
    assert (await send_raw(comm, dumps({"type": "audio_stream_end"})))["code"] == "no_stream"  # it was dropped
    await comm.send_json_to({"type": "voice_call_start"})
    await comm.receive_json_from()
    codes = []
    for _ in range(6):  # 6 s of audio at once: far faster than real time
        await comm.send_json_to({"type": "voice_call_audio_chunk", "audio_base64": b64(silence(1.0))})
    while not await comm.receive_nothing(timeout=1):
        codes.append((await comm.receive_json_from())["code"])
    assert "audio_rate_exceeded" in codes
    assert await send_raw(comm, dumps({"type": "ping"})) == {"type": "pong"}
    await comm.disconnect()
