"""What the socket does, as plain synchronous functions the consumer calls off the event loop."""

import base64
import functools
from dataclasses import dataclass

from django.conf import settings

from apps.accounts import quotas
from apps.accounts.selectors import access_ended_reason
from apps.accounts.services import token_authenticate
from apps.characters.models import Character
from apps.characters.selectors import (
    character_drafts_visible,
    character_get_for_chat,
    greeting_audio_pcm,
    voice_spec_of,
)
from apps.characters.services import greeting_audio_refresh
from apps.conversations import turns
from apps.conversations.models import ChatSession, Message
from apps.conversations.selectors import session_get_for_user, session_is_new
from apps.conversations.services import NothingToRegenerate, session_create, session_open, turn_finish, turn_interrupt
from apps.conversations.turns import text_turn_submit, transcript_accept
from apps.conversations.utterances import utterance_put
from apps.core.audio import PCM_RATE, pcm_resample
from apps.core.events import channel_send
from apps.memory.selectors import memories_of, memory_item
from apps.memory.services import MemoryRequestError, memory_delete
from apps.realtime import protocol as p
from apps.realtime.state import ClientError
from workers.dispatch import enqueue

__all__ = ["text_turn_submit"]  # the socket's turns are the domain's


@dataclass(frozen=True)
class Refused:
    """Why a turn was not queued: the socket's access ended (`access_ended`, a reason), or the user's
    quota of that kind is spent (`retry_after`, seconds)."""

    access_ended: str | None = None
    retry_after: float | None = None


def turn_admit(*, user_id: int, token_id: int | None, session_key: str | None, quota: str, submit):
    """Re-check the socket's access, take one `quota` of the user's and call `submit` (which saves
    the user's line and queues the turn); its result, or Refused. One trip from the event loop for
    all three (each trip costs the socket a thread hop and a connection check before `thinking`)."""
    reason = access_ended_reason(user_id=user_id, token_id=token_id, session_key=session_key)
    if reason is not None:
        return Refused(access_ended=reason)
    retry_after = quotas.quota_take(user_id=user_id, kind=quota)
    if retry_after is not None:
        return Refused(retry_after=retry_after)
    return submit()


@dataclass(frozen=True)
class Conversation:
    """Which character, in which session, a socket is talking with."""

    character: Character
    session: ChatSession


def socket_token_user(*, key: str):
    """(user, token) for a live API token, or (None, None)."""
    token = token_authenticate(key=key)
    return (token.user, token) if token else (None, None)


def conversation_open(
    *, user, character_name: str, new_session: bool = False, session_id: str | None = None
) -> Conversation | None:
    """Open the user's latest session with the named character (or a new one, or the one named by
    `session_id`); None if the character is unknown. ClientError `unknown_session` for a session
    that is not the user's, not live, or with another character."""
    character = character_get_for_chat(name=character_name, include_unpublished=character_drafts_visible(user=user))
    if character is None:
        return None
    if session_id is not None:
        session = session_get_for_user(user=user, session_id=session_id, character=character)
        if session is None:
            raise ClientError(p.ErrorCode.UNKNOWN_SESSION, f"You have no session {session_id!r} with {character.name}.")
    elif new_session:
        session = session_create(user=user, character=character)
    else:
        session = session_open(user=user, character=character)
    turns.prompt_prefill_request(session=session)  # the first turn then prefills only its line
    return Conversation(character=character, session=session)


def text_turn_regenerate(*, session: ChatSession, reply_channel: str, text_deltas: bool) -> str:
    """Queue a new reply in place of the session's last one; ClientError when there is none."""
    try:
        return turns.text_turn_regenerate(session=session, reply_channel=reply_channel, text_deltas=text_deltas)
    except NothingToRegenerate as exc:
        raise ClientError(exc.code, exc.message) from None


def greeting_frames(*, conversation: Conversation, sample_rate: int) -> list[p.ServerFrame]:
    """The greeting spoken, for a call starting on a new session: `tts_start`, `audio_chunk`s at
    `sample_rate`, `audio_end`; nothing when the user has already spoken in the session or the audio
    is not rendered (then its rendering is queued, for the next call)."""
    character = conversation.character
    if not character.greeting or not session_is_new(session_id=conversation.session.pk):
        return []
    rendered = greeting_audio_pcm(character=character)
    if rendered is None:
        greeting_audio_refresh(character=character)
        return []
    pcm = pcm_resample(rendered[0], rendered[1], sample_rate)
    step = max(2, sample_rate * settings.AUDIO_OUTPUT_CHUNK_MS // 1000 * 2)
    chunks = [
        p.AudioChunk(audio_base64=base64.b64encode(pcm[i : i + step]).decode(), audio_sample_rate=sample_rate)
        for i in range(0, len(pcm), step)
    ]
    return [p.TtsStart(text=character.greeting, emotion="neutral"), *chunks, p.AudioEnd()]


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
    container: str | None = None,
) -> None:
    """Queue the transcription of an utterance; the ASR job saves the user's message and queues the reply.

    With `transcript` (a partial transcript that covered all the speech) the ASR pass is skipped
    and the reply is queued at once. With `container` the utterance is a file the ASR job decodes.
    """
    session = conversation.session
    job = dict(
        turn_id=turn_id,
        reply_channel=reply_channel,
        speech_end_at=speech_end_at,
        text_deltas=text_deltas,
        speak=_speak(conversation, sample_rate),
    )
    if transcript is not None:
        timings = _from_partial(pcm)
        # From this process's one sync thread, which every socket's database work shares: a full channel
        # (this process behind) fails the turn at once rather than holding that thread while it drains.
        send = functools.partial(channel_send, full_wait_s=0)
        transcript_accept(send=send, text=transcript, pcm=pcm, timings=timings, session=session, **job)
    else:
        enqueue(
            "workers.asr.tasks.asr_transcribe",
            session_id=str(session.pk),
            utterance_id=utterance_put(pcm),
            container=container,
            **job,
        )


def _speak(conversation: Conversation, sample_rate: int) -> dict:
    """How a spoken reply is spoken: the character's voice, at the socket's output rate."""
    character = conversation.character
    return {"voice": voice_spec_of(character.voice, character.language), "sample_rate": sample_rate}


def _from_partial(pcm: bytes) -> dict:
    """The user message's timings when a partial transcript covered all the speech (no final ASR pass)."""
    return {"asr_ms": 0.0, "audio_s": round(len(pcm) / 2 / PCM_RATE, 2), "asr_from_partial": True}


def voice_reply_submit(
    *,
    conversation: Conversation,
    turn_id: str,
    reply_channel: str,
    text_deltas: bool,
    sample_rate: int,
    speech_end_at: float | None = None,
    draft: str | None = None,
) -> None:
    """Queue a spoken reply: to `draft`, a partial transcript of what the user is still saying (nothing
    is saved; the socket holds back its frames until `voice_turn_keep` confirms it, or cancels it),
    or to the user's message just saved (when the one started on a partial was dropped)."""
    turns.voice_reply_queue(
        turn_id=turn_id,
        session=conversation.session,
        reply_channel=reply_channel,
        text_deltas=text_deltas,
        speak=_speak(conversation, sample_rate),
        speech_end_at=speech_end_at,
        draft=draft,
    )


def voice_turn_keep(*, conversation: Conversation, turn_id: str, text: str, pcm: bytes, speech_end_at: float) -> bool:
    """The final transcript (a partial that covered all the speech) says what the reply started on
    said: save the user's message and confirm the reply. False when its job had dropped it already."""
    return turns.transcript_keep(
        session=conversation.session,
        text=text,
        pcm=pcm,
        timings=_from_partial(pcm),
        turn_id=turn_id,
        speech_end_at=speech_end_at,
    )


def partial_request(*, partial_id: str, pcm: bytes, reply_channel: str) -> None:
    """Queue a partial transcript of what the user has said so far (answered as `asr.partial`)."""
    enqueue(
        "workers.asr.tasks.asr_partial",
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


def text_turn_mark_interrupted(*, turn) -> None:
    """Save a text reply cut short: as far as the client was sent it, marked interrupted."""
    turn_interrupt(
        turn_id=turn.id, session_id=turn.session_id, spoken=turn.text_shown, emotion=turn.emotion, timings={}
    )


def memories_list(*, user_id, character_id, limit: int) -> list[dict]:
    """The user's memories of this character as `memories` items, newest first."""
    return [memory_item(m) for m in memories_of(user_id=user_id, character_id=character_id, limit=limit)]


def memories_search_request(
    *, user_id, character_id, query: str, limit: int, reply_channel: str, request_id: str
) -> None:
    """Queue a search by meaning (queue `embed`); the answer comes back as `memory.results`."""
    enqueue(
        "workers.embed.tasks.memory_search",
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
