"""The reply starts on a partial transcript at a pause (REPLY_ON_PARTIAL) and is kept when the final
transcript says the same; nothing of it reaches the client before the turn is confirmed.

Real speech (Piper) through the real ASR and TTS, the scripted LLM ("You said: X. I am Nova.
Anything else?"), in both modes: real Celery workers, and tasks in threads of this process.
"""

import base64

import pytest
from asgiref.sync import sync_to_async
from django.test import override_settings

from apps.conversations import turns
from apps.conversations.cancel import turn_confirmed_wait
from apps.conversations.models import Message
from tests.realtime.client import connected_socket, types, until_turn_end
from tests.realtime.test_voice import assert_spoken_turn
from tests.speech import piper_says, silence, words

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]

CHUNK_MS = 100
REPLY_JOB = "workers.llm.tasks.llm_reply"


@pytest.fixture(params=["scaled", "embedded"])
def mode(request, settings):
    if request.param == "scaled":
        request.getfixturevalue("llm_worker")
        request.getfixturevalue("voice_worker")
    else:
        settings.TASKS_IN_PROCESS = True
    return request.param


@pytest.fixture
def replies(monkeypatch) -> list[dict]:
    """The reply jobs this process queues (the socket's, and in the embedded mode every one), run as
    usual; memory jobs are left out (no memory worker here)."""
    queued, enqueue = [], turns.enqueue

    def spy(name, **kwargs):
        if name == REPLY_JOB:
            queued.append(kwargs)
        if not name.startswith("workers.embed."):
            enqueue(name, **kwargs)

    monkeypatch.setattr(turns, "enqueue", spy)
    return queued


def is_partial(frame: dict) -> bool:
    return frame["type"] == "transcription" and frame["is_partial"]


class Talk:
    """Push-to-talk in real time, driven by what comes back: each phrase is followed by silence until
    a partial transcript of it shows (the reply may then start on it), then `settle_s` more."""

    def __init__(self, comm):
        self.comm, self.during = comm, []

    async def send(self, pcm: bytes, frame_type: str = "binary") -> None:
        """Send one chunk, then read what comes back for a chunk's time (so the audio goes at real time)."""
        if frame_type == "binary":
            await self.comm.send_to(bytes_data=pcm)
        else:
            await self.comm.send_json_to({"type": frame_type, "audio_base64": base64.b64encode(pcm).decode()})
        while not await self.comm.receive_nothing(timeout=CHUNK_MS / 1000):
            self.during.append(await self.comm.receive_json_from())

    async def say(self, speech: bytes, *, settle_s: float = 1.0, frame_type: str = "binary") -> str:
        """Say `speech`, pause until its partial transcript comes back; returns that partial's text."""
        step, seen = 32 * CHUNK_MS, sum(map(is_partial, self.during))
        for i in range(0, len(speech), step):
            await self.send(speech[i : i + step], frame_type)
        quiet = silence(CHUNK_MS / 1000)
        for _ in range(150):  # at most 15 s
            partials = [f for f in self.during if is_partial(f)]
            if len(partials) > seen and partials[-1]["text"]:
                break
            await self.send(quiet, frame_type)
        else:
            raise AssertionError(f"no partial transcript came back: {types(self.during)}")
        for _ in range(round(settle_s * 1000 / CHUNK_MS)):  # the reply is written and spoken meanwhile
            await self.send(quiet, frame_type)
        return partials[-1]["text"]


async def stream(comm) -> Talk:
    await comm.send_json_to({"type": "audio_stream_start"})
    assert (await comm.receive_json_from()) == {"type": "audio_stream_started"}
    return Talk(comm)


async def saved_turn(reply_id: str) -> tuple[Message, Message]:
    """The user's message and the reply to it, checked to be the session's last two, in that order."""
    reply = await Message.objects.aget(pk=reply_id)
    rows = await sync_to_async(list)(Message.objects.filter(session_id=reply.session_id).order_by("created_at"))
    assert [m.role for m in rows] == ["assistant", "user", "assistant"] and rows[-1] == reply
    return rows[1], reply


async def test_a_reply_started_on_the_partial_is_kept_and_held_back_until_the_user_finishes(
    api_key, character, mode, replies
):
    speech = await sync_to_async(piper_says)("Tell me about the moon.")
    comm = await connected_socket(api_key)
    talk = await stream(comm)
    partial = await talk.say(speech)
    assert [f for f in talk.during if not is_partial(f)] == []  # the reply is being written: none of it shows
    assert len(replies) == 1 and replies[0]["draft"] == partial
    await comm.send_json_to({"type": "audio_stream_end"})
    frames = await until_turn_end(comm)
    reply_text = assert_spoken_turn(frames, ["moon"])
    assert types(frames)[:4] == ["asr_start", "transcription", "asr_end", "thinking"]
    assert len(replies) == 1  # the reply started on the partial is the turn's: no second job
    assert frames[-1]["message_id"] == replies[0]["turn_id"]
    user, reply = await saved_turn(frames[-1]["message_id"])
    assert user.content == partial and user.timings["asr_from_partial"] is True
    assert reply.content == reply_text and reply.status == "complete"
    assert reply.timings["reply_on_partial"] is True and reply.timings["reply_restarts"] == 0
    assert reply.timings["reply_started_at_ms"] < 0  # before the user let go
    assert reply.timings["first_audio_at_ms"] > 0


async def test_speech_going_on_after_the_pause_restarts_the_reply(api_key, character, mode, replies):
    first = await sync_to_async(piper_says)("Tell me about the moon.")
    more = await sync_to_async(piper_says)("And the stars.")
    comm = await connected_socket(api_key)
    talk = await stream(comm)
    early = await talk.say(first, settle_s=0.8)
    assert "stars" not in words(early)
    whole = await talk.say(more)
    assert [f for f in talk.during if not is_partial(f)] == []
    await comm.send_json_to({"type": "audio_stream_end"})
    frames = await until_turn_end(comm)
    reply_text = assert_spoken_turn(frames, ["moon", "stars"])
    assert [r["draft"] for r in replies] == [early, whole]
    assert reply_text.count("I am Nova.") == 1  # nothing of the first reply was played
    assert "stars" in words(reply_text)  # the reply answers everything the user said
    dropped, kept = replies[0]["turn_id"], replies[1]["turn_id"]
    assert frames[-1]["message_id"] == kept
    user, reply = await saved_turn(kept)
    assert user.content == whole
    assert reply.content == reply_text
    assert reply.timings["reply_on_partial"] is True and reply.timings["reply_restarts"] == 1
    assert await sync_to_async(turn_confirmed_wait)(turn_id=dropped, timeout_s=10) is None
    assert not await Message.objects.filter(pk=dropped).aexists()


async def test_stop_while_the_user_speaks_cancels_the_reply_started_on_the_partial(api_key, character, mode, replies):
    speech = await sync_to_async(piper_says)("Tell me about the moon.")
    comm = await connected_socket(api_key)
    talk = await stream(comm)
    await talk.say(speech)
    await comm.send_json_to({"type": "stop"})
    answer = await comm.receive_json_from()
    assert (answer["type"], answer["code"]) == ("error", "no_turn")  # the client had nothing in flight
    assert await sync_to_async(turn_confirmed_wait)(turn_id=replies[0]["turn_id"], timeout_s=10) is None
    await comm.send_json_to({"type": "audio_stream_end"})  # the user's turn itself goes on
    frames = await until_turn_end(comm)
    reply_text = assert_spoken_turn(frames, ["moon"])
    assert reply_text.count("I am Nova.") == 1
    assert len(replies) == 2 and "draft" not in replies[1]
    assert frames[-1]["message_id"] == replies[1]["turn_id"]
    _, reply = await saved_turn(frames[-1]["message_id"])
    assert reply.timings["reply_on_partial"] is False and reply.timings["reply_restarts"] == 0
    assert not await Message.objects.filter(pk=replies[0]["turn_id"]).aexists()


@override_settings(VAD_SILENCE_MS=30000)  # the call hears the pause, but not the end of the utterance
async def test_hanging_up_while_the_reply_is_started_on_the_partial_leaves_nothing(api_key, character, mode, replies):
    speech = await sync_to_async(piper_says)("Tell me about the moon.")
    comm = await connected_socket(api_key)
    await comm.send_json_to({"type": "voice_call_start"})
    assert (await comm.receive_json_from()) == {"type": "voice_call_listening"}
    talk = Talk(comm)
    await talk.send(silence(0.3), "voice_call_audio_chunk")
    await talk.say(speech, frame_type="voice_call_audio_chunk")
    assert [f for f in talk.during if not is_partial(f)] == []
    await comm.send_json_to({"type": "voice_call_stop"})
    assert len(replies) == 1
    assert await sync_to_async(turn_confirmed_wait)(turn_id=replies[0]["turn_id"], timeout_s=10) is None
    assert await comm.receive_nothing(timeout=1.0)  # none of it leaked out after the hang-up
    assert await sync_to_async(list)(Message.objects.values_list("role", flat=True)) == ["assistant"]  # the greeting


@override_settings(REPLY_ON_PARTIAL=False)
@pytest.mark.usefixtures("llm_worker", "voice_worker")
async def test_replies_wait_for_the_final_transcript_when_turned_off(api_key, character, replies):
    speech = await sync_to_async(piper_says)("Tell me about the moon.")
    comm = await connected_socket(api_key)
    talk = await stream(comm)
    await talk.say(speech, settle_s=0.3)
    assert replies == []
    await comm.send_json_to({"type": "audio_stream_end"})
    frames = await until_turn_end(comm)
    assert_spoken_turn(frames, ["moon"])
    assert len(replies) == 1 and "draft" not in replies[0]
    _, reply = await saved_turn(frames[-1]["message_id"])
    assert "reply_on_partial" not in reply.timings
