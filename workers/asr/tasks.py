"""Celery tasks of the `asr` queue: a voice turn's transcription, and transcribing uploads."""

import logging
import time

from celery import shared_task
from django.conf import settings

from apps.conversations.selectors import session_get_for_turn
from apps.conversations.services import turn_start
from workers.asr.engine import get_asr_engine
from workers.audio import PCM_RATE, AudioError, decode_to_pcm, encode
from workers.audio_store import utterance_delete, utterance_get
from workers.cancel import turn_is_cancelled
from workers.dispatch import enqueue
from workers.events import channel_send
from workers.job_failure import AnsweringTask, failure_message
from workers.llm.tasks import llm_reply

log = logging.getLogger(__name__)


def _frames(channel: str, turn_id: str, *frames: dict) -> None:
    channel_send(channel, {"type": "turn.frames", "turn_id": turn_id, "frames": list(frames)})


def _fail(channel: str, turn_id: str, code: str, message: str) -> None:
    _frames(
        channel,
        turn_id,
        {"type": "error", "code": code, "message": message},
        {"type": "turn_end", "status": "failed", "message_id": None},
    )


@shared_task(
    name="workers.asr.tasks.asr_transcribe",
    base=AnsweringTask,  # killed at the hard limit, the turn still ends
    acks_late=True,
    soft_time_limit=settings.ASR_SOFT_TIME_LIMIT_S,
    time_limit=settings.ASR_HARD_TIME_LIMIT_S,
)
def asr_transcribe(
    *,
    turn_id: str,
    session_id: str,
    utterance_id: str,
    reply_channel: str,
    speech_end_at: float,
    speak: dict,
    text_deltas: bool,
) -> None:
    """Transcribe a voice turn's utterance, save it as the user's message, then queue the reply."""
    if turn_is_cancelled(turn_id=turn_id):
        return
    pcm = utterance_get(utterance_id)
    if pcm is None:
        return _fail(reply_channel, turn_id, "audio_expired", "The recording expired before it was transcribed.")
    session = session_get_for_turn(session_id=session_id)
    if session is None:
        return _fail(reply_channel, turn_id, "asr_failed", "The conversation is gone.")
    try:
        transcript = get_asr_engine().transcribe(pcm)
    except Exception as exc:  # the model failing must end the turn, not the worker
        log.exception("turn %s: ASR failed", turn_id)
        return _fail(reply_channel, turn_id, "asr_failed", failure_message(asr_transcribe.name, exc))
    timings = {"asr_ms": round(transcript.elapsed_s * 1000, 1), "audio_s": round(transcript.audio_s, 2)}
    transcript_accept(
        text=transcript.text,
        pcm=pcm,
        timings=timings,
        turn_id=turn_id,
        session=session,
        reply_channel=reply_channel,
        speech_end_at=speech_end_at,
        speak=speak,
        text_deltas=text_deltas,
    )


def transcript_accept(
    *,
    text: str,
    pcm: bytes,
    timings: dict,
    turn_id: str,
    session,
    reply_channel: str,
    speech_end_at: float,
    speak: dict,
    text_deltas: bool,
) -> None:
    """A voice turn's final transcript: tell the client, save the user's message, queue the reply.

    Called by the ASR job, or by the socket edge when a partial transcript already covered all
    the speech of the utterance.
    """
    _frames(
        reply_channel,
        turn_id,
        {"type": "transcription", "text": text, "is_partial": False},
        {"type": "asr_end", "text": text},
    )
    if not text:
        return _fail(reply_channel, turn_id, "no_speech", "No words were heard.")
    timings = {**timings, "transcript_at_ms": round((time.time() - speech_end_at) * 1000, 1)}
    turn_start(
        session=session,
        content=text,
        timings=timings,
        audio_wav=encode(pcm, PCM_RATE, "wav") if settings.KEEP_AUDIO else None,
    )
    _frames(reply_channel, turn_id, {"type": "thinking"})
    enqueue(
        llm_reply,
        turn_id=turn_id,
        session_id=str(session.pk),
        reply_channel=reply_channel,
        text_deltas=text_deltas,
        submitted_at=time.time(),
        speak=speak,
        speech_end_at=speech_end_at,
    )


@shared_task(name="workers.asr.tasks.asr_partial", base=AnsweringTask, soft_time_limit=30, time_limit=40)
def asr_partial(*, partial_id: str, utterance_id: str, covered: int, reply_channel: str) -> None:
    """Transcribe what the user has said so far; the edge shows it and may take it as final.

    Skipped when the edge no longer wants it (the utterance was finished and sent for a full pass).
    Always answers, so the edge knows no partial is in flight any more; `covered` is 0 when the
    text must not stand for the audio.
    """
    if turn_is_cancelled(turn_id=partial_id):
        return
    pcm, text = utterance_get(utterance_id), ""
    try:
        text = get_asr_engine().transcribe(pcm).text if pcm else ""
    except Exception:  # a failed partial costs nothing: the final pass runs as usual
        log.exception("partial transcript %s failed", partial_id)
    finally:
        utterance_delete(utterance_id)
    channel_send(
        reply_channel,
        {"type": "asr.partial", "partial_id": partial_id, "text": text, "covered": covered if pcm and text else 0},
    )


@shared_task(name="workers.asr.tasks.asr_file", base=AnsweringTask, soft_time_limit=120, time_limit=150)
def asr_file(*, utterance_id: str, reply_channel: str) -> None:
    """Transcribe an uploaded file (any container) for the REST API; answers on `reply_channel`."""
    data = utterance_get(utterance_id)
    try:
        if data is None:
            raise AudioError("audio_expired", "The upload expired before it was transcribed.")
        pcm = decode_to_pcm(data)
        transcript = get_asr_engine().transcribe(pcm)
        channel_send(
            reply_channel, {"type": "asr.result", "text": transcript.text, "duration_s": round(transcript.audio_s, 2)}
        )
    except AudioError as exc:
        channel_send(reply_channel, {"type": "asr.result", "error": {"code": exc.code, "message": exc.message}})
