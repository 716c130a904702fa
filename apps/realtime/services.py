"""What the socket does, as plain synchronous functions the consumer calls off the event loop."""

import time
import uuid
from dataclasses import dataclass

from django.db import transaction

from apps.accounts.services import token_authenticate
from apps.characters.models import Character, Voice
from apps.characters.selectors import character_drafts_visible, character_get_for_chat
from apps.conversations.models import ChatSession, Message
from apps.conversations.services import session_create, session_open, turn_finish, turn_interrupt, turn_start
from apps.memory.selectors import memories_of, memory_item
from apps.memory.services import MemoryRequestError, memory_delete
from apps.realtime.state import ClientError
from workers.asr.tasks import asr_partial, asr_transcribe, transcript_accept
from workers.audio import PCM_RATE
from workers.audio_store import utterance_put
from workers.dispatch import enqueue
from workers.embed.tasks import memory_search
from workers.llm.tasks import llm_reply


@dataclass(frozen=True)
class Conversation:
    """Which character, in which session, a socket is talking with."""

    character: Character
    session: ChatSession


def socket_token_user(*, key: str):
    """(user, token) for a live API token, or (None, None)."""
    token = token_authenticate(key=key)
    return (token.user, token) if token else (None, None)


def conversation_open(*, user, character_name: str, new_session: bool = False) -> Conversation | None:
    """Open the user's latest session with the named character (or a new one); None if unknown."""
    character = character_get_for_chat(name=character_name, include_unpublished=character_drafts_visible(user=user))
    if character is None:
        return None
    session = (
        session_create(user=user, character=character) if new_session else session_open(user=user, character=character)
    )
    return Conversation(character=character, session=session)


def text_turn_submit(*, session: ChatSession, content: str, reply_channel: str, text_deltas: bool) -> str:
    """Save the user's message, then queue the reply job once the row is committed. Returns the turn id."""
    turn_id = str(uuid.uuid4())
    with transaction.atomic():
        turn_start(session=session, content=content)
        transaction.on_commit(
            lambda: enqueue(
                llm_reply,
                turn_id=turn_id,
                session_id=str(session.pk),
                reply_channel=reply_channel,
                text_deltas=text_deltas,
                submitted_at=time.time(),
            )
        )
    return turn_id


def turn_mark_failed(*, turn_id: str, session_id, reason: str) -> Message:
    """Record a turn the worker never finished (e.g. it went silent)."""
    return turn_finish(
        turn_id=turn_id,
        session_id=session_id,
        content="",
        emotion="neutral",
        status=Message.Status.FAILED,
        timings={"error": reason},
    )


def voice_spec_of(voice: Voice | None, language: str = "en") -> dict:
    """The TTS job's view of a voice (None: the shipped Piper voice)."""
    if voice is None:
        return {"engine": "piper", "model": "", "speaker": "", "language": language, "speed": 1.0}
    return {
        "engine": voice.engine,
        "model": voice.model,
        "speaker": voice.speaker,
        "language": voice.language,
        "speed": voice.speed,
    }


def voice_turn_submit(
    *,
    conversation: Conversation,
    turn_id: str,
    pcm: bytes,
    reply_channel: str,
    text_deltas: bool,
    sample_rate: int,
    speech_end_at: float,
    transcript: str | None = None,
) -> None:
    """Queue the transcription of an utterance; the ASR job saves the user's message and queues the reply.

    With `transcript` (a partial transcript that covered all the speech) the ASR pass is skipped
    and the reply is queued at once.
    """
    session = conversation.session
    job = dict(
        turn_id=turn_id,
        reply_channel=reply_channel,
        speech_end_at=speech_end_at,
        text_deltas=text_deltas,
        speak={
            "voice": voice_spec_of(conversation.character.voice, conversation.character.language),
            "sample_rate": sample_rate,
        },
    )
    if transcript is not None:
        timings = {"asr_ms": 0.0, "audio_s": round(len(pcm) / 2 / PCM_RATE, 2), "asr_from_partial": True}
        transcript_accept(text=transcript, pcm=pcm, timings=timings, session=session, **job)
    else:
        enqueue(asr_transcribe, session_id=str(session.pk), utterance_id=utterance_put(pcm), **job)


def partial_request(*, partial_id: str, pcm: bytes, reply_channel: str) -> None:
    """Queue a partial transcript of what the user has said so far (answered as `asr.partial`)."""
    enqueue(
        asr_partial,
        partial_id=partial_id,
        utterance_id=utterance_put(pcm),
        covered=len(pcm),
        reply_channel=reply_channel,
    )


def turn_mark_interrupted(*, turn, now: float) -> None:
    """Save a spoken reply cut short: only the units the client had started playing, marked interrupted."""
    turn_interrupt(
        turn_id=turn.id,
        session_id=turn.session_id,
        spoken=turn.spoken_by(now),
        timings={"interrupted_at_ms": round((now - turn.speech_end_at) * 1000, 1), **turn.audio_timings()},
    )


def memories_list(*, user_id, character_id, limit: int) -> list[dict]:
    """The user's memories of this character as `memories` items, newest first."""
    return [memory_item(m) for m in memories_of(user_id=user_id, character_id=character_id, limit=limit)]


def memories_search_request(
    *, user_id, character_id, query: str, limit: int, reply_channel: str, request_id: str
) -> None:
    """Queue a search by meaning (queue `embed`); the answer comes back as `memory.results`."""
    enqueue(
        memory_search,
        user_id=user_id,
        character_id=character_id,
        query=query,
        k=limit,
        reply_channel=reply_channel,
        request_id=request_id,
    )


def memory_forget(*, user_id, memory_id: str) -> None:
    try:
        memory_delete(user_id=user_id, memory_id=memory_id)
    except MemoryRequestError as exc:
        raise ClientError(exc.code, exc.message) from None
