"""When the edge asks for partial transcripts, and when one can stand as the final transcript."""

import pytest
from django.test import override_settings

from apps.realtime.state import Partials
from apps.realtime.vad import StreamingVad
from tests.speech import audioeval_clip, silence

MS = 32  # bytes per millisecond of 16 kHz s16le audio


@override_settings(ASR_PARTIALS=True, ASR_PARTIAL_INTERVAL_MS=1000, ASR_PARTIAL_PAUSE_MS=200)
def test_a_partial_per_second_of_speech_and_one_at_each_pause():
    partials = Partials()
    assert not partials.track(500 * MS, quiet_ms=500)  # nothing said yet: nothing to transcribe
    assert not partials.track(900 * MS, quiet_ms=0)
    assert partials.track(1000 * MS, quiet_ms=0)  # a second of speech
    partials.ask(1000 * MS)
    assert not partials.track(2500 * MS, quiet_ms=0)  # one in flight at a time
    partials.answer(1000 * MS, "hello")
    assert partials.final is None  # speech went on after what it covered
    assert partials.track(2500 * MS, quiet_ms=0)
    partials.ask(2500 * MS)
    partials.answer(2500 * MS, "hello there")
    assert not partials.track(2700 * MS, quiet_ms=150)
    assert partials.track(2800 * MS, quiet_ms=250)  # a pause
    partials.ask(2800 * MS)
    assert partials.awaited and partials.final is None  # the one in flight covers all the speech
    partials.answer(2800 * MS, "hello there friend")
    assert partials.final == "hello there friend"
    assert not partials.track(3300 * MS, quiet_ms=750)  # silence adds nothing new


@override_settings(ASR_PARTIALS=True, ASR_PARTIAL_INTERVAL_MS=1000, ASR_PARTIAL_PAUSE_MS=200)
def test_speech_right_at_the_end_of_a_partial_is_not_taken_as_covered():
    partials = Partials()
    partials.ask(1000 * MS)
    partials.answer(1000 * MS, "hello")
    partials.track(1050 * MS, quiet_ms=50)  # the last speech ended 1000 ms in: maybe cut mid-sound
    assert partials.final is None
    partials.answer(0, "")  # a failed partial never stands for the audio
    assert partials.final is None


@override_settings(ASR_PARTIALS=False)
def test_partials_can_be_turned_off():
    assert not Partials().track(5000 * MS, quiet_ms=300)


@override_settings(ASR_PARTIALS=True, ASR_PARTIAL_INTERVAL_MS=0, ASR_PARTIAL_PAUSE_MS=200)
def test_by_default_only_pauses_ask_for_partials():
    partials = Partials()
    assert not partials.track(5000 * MS, quiet_ms=0)
    assert partials.track(5200 * MS, quiet_ms=200)


def test_the_vad_tracks_where_speech_last_was():
    speech, _ = audioeval_clip("hello_world")
    vad = StreamingVad()
    vad.feed(silence(0.5) + speech + silence(0.4))
    assert 350 <= vad.quiet_ms <= 800  # the clip's own tail is quiet too
    assert vad.fed_ms == pytest.approx(900 + len(speech) / MS, abs=1)
    vad.feed(speech[:8000])
    assert vad.quiet_ms < 200


@override_settings(ASR_PARTIALS=True, ASR_PARTIAL_INTERVAL_MS=0, ASR_PARTIAL_PAUSE_MS=200)
def test_a_reply_started_on_a_partial_stands_for_the_same_words_only():
    from apps.realtime.speculation import Speculation, SpeculationMixin, transcript_normalize

    assert transcript_normalize(" Tell me,  about the MOON! ") == transcript_normalize("tell me about the moon")
    assert transcript_normalize("Tell me about the moon.") != transcript_normalize("Tell me about the moon and")
    partials, socket = Partials(), SpeculationMixin()
    partials.track(2000 * MS, quiet_ms=200)
    partials.ask(2000 * MS)
    partials.answer(2000 * MS, "Tell me about the moon.")
    socket.speculation = Speculation(id="s", partials=partials, covered=partials.heard, draft="tell me about the moon")
    assert socket.speculation_matches(partials)
    assert not socket.speculation_matches(Partials())  # another utterance's
    partials.answer(2000 * MS, "Tell me about the moon and")  # the final transcript says more
    assert not socket.speculation_matches(partials)
    partials.answer(2000 * MS, "Tell me about the moon.")
    partials.track(2400 * MS, quiet_ms=50)  # speech went on past the partial: it is no final transcript
    assert not partials.covers(socket.speculation.covered) and not socket.speculation_matches(partials)


def test_the_socket_runs_the_vad_off_its_event_loop_with_the_same_events():
    """A call's 20 ms frames through `feed_async` give the events `feed` gives for the same audio, and
    the model never runs on the loop's thread (there it held up every other socket's frames)."""
    import asyncio
    import threading

    import apps.realtime.vad as vad_module

    speech, _ = audioeval_clip("hello_world")
    audio = silence(0.5) + speech + silence(0.8) + speech + silence(0.8)
    frames = [audio[i : i + 640] for i in range(0, len(audio), 640)]
    expected = StreamingVad()
    want = [(e.kind, e.at_ms) for frame in frames for e in expected.feed(frame)]
    assert [kind for kind, _ in want] == ["speech_start", "speech_end"] * 2

    ran_on, session = set(), vad_module._session()

    class Watched:
        def run(self, *args, **kwargs):
            ran_on.add(threading.get_ident())
            return session.run(*args, **kwargs)

    async def call():
        streamed = StreamingVad()
        got = [(e.kind, e.at_ms) for frame in frames for e in await streamed.feed_async(frame)]
        return got, streamed, threading.get_ident()

    original = vad_module._session
    vad_module._session = lambda: Watched()
    try:
        got, streamed, loop_thread = asyncio.run(call())
    finally:
        vad_module._session = original
    assert got == want
    assert streamed.position_ms == expected.position_ms and streamed.quiet_ms == expected.quiet_ms
    assert ran_on and loop_thread not in ran_on
