"""Celery tasks of the `asr` queue: a voice turn's transcription, and transcribing uploads."""

import logging

from celery import shared_task
from django.conf import settings

from apps.conversations.cancel import turn_is_cancelled
from apps.conversations.selectors import session_get_for_turn
from apps.conversations.services import asr_job_begin, asr_job_fail, asr_job_finish
from apps.conversations.turns import transcript_accept, turn_fail
from apps.conversations.utterances import utterance_delete, utterance_get
from apps.core.events import channel_send
from apps.core.metrics import ASR, stage_observe
from apps.realtime import protocol as p
from workers.asr.engine import get_asr_engine
from workers.audio import AudioError, decode_to_pcm
from workers.job_failure import AnsweringTask, failure_message

log = logging.getLogger(__name__)
ENGINE = "faster-whisper"  # the `engine` label of the ASR stage


def _fail(channel: str, turn_id: str, code: str, message: str) -> None:
    turn_fail(send=channel_send, reply_channel=channel, turn_id=turn_id, code=code, message=message)


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
    container: str | None = None,
) -> None:
    """Transcribe a voice turn's utterance, save it as the user's message, then queue the reply.

    `container`: the utterance is a file the edge only probed (wav, flac, ogg, mp3, matroska); it is
    decoded here, capped at AUDIO_MAX_UTTERANCE_S. The utterance leaves the cache once transcribed.
    """
    if turn_is_cancelled(turn_id=turn_id):
        utterance_delete(utterance_id)
        return
    pcm = utterance_get(utterance_id)
    if pcm is None:
        return _fail(
            reply_channel, turn_id, p.ErrorCode.AUDIO_EXPIRED, "The recording expired before it was transcribed."
        )
    session = session_get_for_turn(session_id=session_id)
    if session is None:
        utterance_delete(utterance_id)
        return _fail(reply_channel, turn_id, p.ErrorCode.ASR_FAILED, "The conversation is gone.")
    try:
        if container is not None:
            pcm = decode_to_pcm(pcm, max_s=settings.AUDIO_MAX_UTTERANCE_S)
            if not pcm:
                raise AudioError(p.ErrorCode.EMPTY_AUDIO, "The audio file has no samples.")
        transcript = get_asr_engine().transcribe(pcm)
    except AudioError as exc:
        return _fail(reply_channel, turn_id, exc.code, exc.message)
    except Exception as exc:  # the model failing must end the turn, not the worker
        log.exception("turn %s: ASR failed", turn_id)
        return _fail(reply_channel, turn_id, p.ErrorCode.ASR_FAILED, failure_message(asr_transcribe.name, exc))
    finally:  # a worker killed mid-job leaves it for the redelivered job (acks_late)
        utterance_delete(utterance_id)
    timings = {"asr_ms": round(transcript.elapsed_s * 1000, 1), "audio_s": round(transcript.audio_s, 2)}
    stage_observe(ASR, engine=ENGINE, seconds=transcript.elapsed_s)
    transcript_accept(
        send=channel_send,
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
        if pcm:
            transcript = get_asr_engine().transcribe(pcm)
            text = transcript.text
            stage_observe(ASR, engine=ENGINE, seconds=transcript.elapsed_s)
    except Exception:  # a failed partial costs nothing: the final pass runs as usual
        log.exception("partial transcript %s failed", partial_id)
    finally:
        utterance_delete(utterance_id)
    channel_send(
        reply_channel, p.AsrPartialResult(partial_id=partial_id, text=text, covered=covered if pcm and text else 0)
    )


@shared_task(name="workers.asr.tasks.asr_file", base=AnsweringTask, soft_time_limit=120, time_limit=150)
def asr_file(*, utterance_id: str, reply_channel: str) -> None:
    """Transcribe an uploaded file (wav, flac, ogg, mp3, webm) for the REST API; answers on `reply_channel`.

    Decoded with the caps of `decode_to_pcm` (AUDIO_MAX_UPLOAD_S); the upload leaves the cache once read.
    """
    data = utterance_get(utterance_id)
    utterance_delete(utterance_id)
    try:
        if data is None:
            raise AudioError(p.ErrorCode.AUDIO_EXPIRED, "The upload expired before it was transcribed.")
        pcm = decode_to_pcm(data, max_s=settings.AUDIO_MAX_UPLOAD_S)
        if not pcm:
            raise AudioError(p.ErrorCode.EMPTY_AUDIO, "The audio file has no samples.")
        transcript = get_asr_engine().transcribe(pcm)
        channel_send(reply_channel, p.AsrResult(text=transcript.text, duration_s=round(transcript.audio_s, 2)))
    except AudioError as exc:
        channel_send(reply_channel, p.AsrResult(error=p.ErrorBody(code=exc.code, message=exc.message)))


@shared_task(name="workers.asr.tasks.asr_job", base=AnsweringTask, soft_time_limit=120, time_limit=150)
def asr_job(*, job_id: str, utterance_id: str) -> None:
    """Transcribe an uploaded file for a REST speech-to-text job; its row (AsrJob) gets the result.

    As `asr_file`, but nobody waits on a channel: the client asks for the job's status. A job no
    longer queued or running (delivered twice, or deleted) is left alone.
    """
    data = utterance_get(utterance_id)
    utterance_delete(utterance_id)
    if not asr_job_begin(job_id=job_id):
        return
    try:
        if data is None:
            raise AudioError(p.ErrorCode.AUDIO_EXPIRED, "The upload expired before it was transcribed.")
        pcm = decode_to_pcm(data, max_s=settings.AUDIO_MAX_UPLOAD_S)
        del data
        if not pcm:
            raise AudioError(p.ErrorCode.EMPTY_AUDIO, "The audio file has no samples.")
        transcript = get_asr_engine().transcribe(pcm)
    except AudioError as exc:
        return asr_job_fail(job_id=job_id, code=exc.code, message=exc.message)
    asr_job_finish(
        job_id=job_id, text=transcript.text, language=transcript.language, duration_s=round(transcript.audio_s, 2)
    )
