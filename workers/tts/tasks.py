"""Celery tasks of the `tts` queue: speak one unit of a reply; render text for the REST API; and, on the
`batch` queue, render a character's greeting ahead of time."""

import base64
import logging
import time

from celery import shared_task
from django.conf import settings

from apps.characters.services import greeting_audio_render
from apps.conversations.cancel import turn_is_cancelled, turn_stop_ms
from apps.conversations.services import turn_timings_merge
from apps.core.events import channel_send
from apps.core.metrics import TTS_FIRST_AUDIO, stage_observe
from apps.realtime import protocol as p
from workers.audio import encode, resample
from workers.job_failure import AnsweringTask, failure_message, is_time_limit
from workers.tts.engine import VoiceSpec, get_tts_engines

log = logging.getLogger(__name__)


@shared_task(
    name="workers.tts.tasks.tts_speak",
    base=AnsweringTask,  # killed at the hard limit, the unit still ends (with an error)
    acks_late=True,
    soft_time_limit=settings.TTS_SOFT_TIME_LIMIT_S,
    time_limit=settings.TTS_HARD_TIME_LIMIT_S,
)
def tts_speak(
    *, turn_id: str, seq: int, text: str, emotion: str, voice: dict, sample_rate: int, reply_channel: str
) -> None:
    """Synthesize unit `seq` of a reply and send its frames; the socket plays units in order."""
    if turn_is_cancelled(turn_id=turn_id):
        return
    head = [
        p.TtsStart(text=text, emotion=emotion),
        p.Response(content=text, content_cn=text, emotion=emotion),
    ]
    started = time.monotonic()
    try:
        audio, rate = get_tts_engines().synthesize(text, VoiceSpec(**voice), emotion)
    except Exception as exc:  # a failed unit must not stall the ones after it
        log.exception("turn %s unit %s: TTS failed", turn_id, seq)
        message = failure_message(tts_speak.name, exc) if is_time_limit(exc) else f"Speech synthesis failed: {exc}"
        error = p.Error(code=p.ErrorCode.TTS_FAILED, message=message)
        return _unit(reply_channel, turn_id, seq, head + [error], last=True)
    stop_ms = turn_stop_ms(turn_id=turn_id)
    if stop_ms is not None:  # cancelled while synthesizing: the socket no longer wants it
        turn_timings_merge(turn_id=turn_id, timings={"tts_stop_ms": stop_ms})
        return
    pcm = resample(audio, rate, sample_rate).tobytes()
    step = max(2, sample_rate * settings.AUDIO_OUTPUT_CHUNK_MS // 1000 * 2)
    chunks = [pcm[i : i + step] for i in range(0, len(pcm), step)] or [b""]
    for i, chunk in enumerate(chunks):
        frame = p.AudioChunk(audio_base64=base64.b64encode(chunk).decode(), audio_sample_rate=sample_rate)
        _unit(reply_channel, turn_id, seq, (head if i == 0 else []) + [frame], last=i == len(chunks) - 1)
        if i == 0 and seq == 0:  # the reply's first audio is on its way to the socket
            stage_observe(TTS_FIRST_AUDIO, engine=voice.get("engine", "piper"), seconds=time.monotonic() - started)


def _unit(channel: str, turn_id: str, seq: int, frames: list[p.ServerFrame], *, last: bool) -> None:
    channel_send(channel, p.TurnUnit(turn_id=turn_id, seq=seq, frames=frames, last=last))


@shared_task(name="workers.tts.tasks.tts_render", base=AnsweringTask, soft_time_limit=60, time_limit=75)
def tts_render(*, text: str, voice: dict, emotion: str, fmt: str, sample_rate: int, reply_channel: str) -> None:
    """Render text to an audio file for the REST API; answers on `reply_channel`."""
    try:
        audio, rate = get_tts_engines().synthesize(text, VoiceSpec(**voice), emotion)
        data = encode(resample(audio, rate, sample_rate).tobytes(), sample_rate, fmt)
        channel_send(reply_channel, p.TtsResult(audio=data))
    except Exception as exc:
        log.exception("TTS render failed")
        message = failure_message(tts_render.name, exc) if is_time_limit(exc) else str(exc)
        channel_send(reply_channel, p.TtsResult(error=p.ErrorBody(code=p.ErrorCode.TTS_FAILED, message=message)))


@shared_task(
    name="workers.tts.tasks.greeting_render", acks_late=True, soft_time_limit=60, time_limit=75, ignore_result=True
)
def greeting_render(*, character_id: int) -> None:
    """Render a character's greeting in its voice and store it (queue `batch`); idempotent."""
    done = greeting_audio_render(character_id=character_id, synthesize=_synthesize)
    log.info("greeting audio of character %s: %s", character_id, done)


def _synthesize(text: str, voice: dict) -> tuple[bytes, int]:
    audio, rate = get_tts_engines().synthesize(text, VoiceSpec(**voice), "neutral")
    return audio.astype("int16", copy=False).tobytes(), rate
