"""A job that someone is waiting on still answers when it dies: an escaped error, a time limit, a kill.

Tasks a socket or a REST request waits on use `AnsweringTask` as their base. Celery calls its
`on_failure` in the pool process when an exception escapes the task (the soft time limit raised
outside the task's own handling, say), and in the worker's parent process when the hard limit
killed the pool process (`celery.worker.request.Request.on_timeout`): a hung engine cannot answer,
so its supervisor does. The turn then ends with an `error` and `turn_end` at once, instead of
the socket waiting TURN_IDLE_TIMEOUT_S for a worker that is gone. The kwargs carry what that
takes: the turn id and the reply channel.
"""

import logging

from celery import Task
from celery.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded
from django.db import close_old_connections

from apps.core.events import channel_send
from apps.realtime import protocol as p

log = logging.getLogger(__name__)

# What each job does for the user, for the error message.
_WHAT = {
    "workers.llm.tasks.llm_reply": ("The reply", "The model failed to write a reply"),
    "workers.asr.tasks.asr_transcribe": ("Speech recognition", "Speech recognition failed"),
    "workers.asr.tasks.asr_partial": ("The partial transcript", "The partial transcript failed"),
    "workers.asr.tasks.asr_file": ("Transcription", "Transcription failed"),
    "workers.asr.tasks.asr_job": ("Transcription", "Transcription failed"),
    "workers.tts.tasks.tts_speak": ("Speech synthesis", "Speech synthesis failed"),
    "workers.tts.tasks.tts_render": ("Speech synthesis", "Speech synthesis failed"),
    "workers.embed.tasks.memory_search": ("The memory search", "The memory search failed"),
}


def is_time_limit(exc: BaseException) -> bool:
    return isinstance(exc, SoftTimeLimitExceeded | TimeLimitExceeded)


def failure_message(task_name: str, exc: BaseException) -> str:
    """What the user reads: "took too long" for a time limit, else what failed and the error's class."""
    took, failed = _WHAT.get(task_name, ("The job", "The job failed"))
    if is_time_limit(exc):
        return f"{took} took too long and was stopped."
    return f"{failed}: {exc.__class__.__name__}"


class AnsweringTask(Task):
    """Base of the tasks a client waits on: if the task dies, the client still gets its answer."""

    def on_failure(self, exc, task_id, args, kwargs, einfo):
        answer = _ANSWERS.get(self.name)
        if answer is None:
            return
        log.warning("task %s[%s] died (%r): answering its caller", self.name, task_id, exc)
        try:
            answer(kwargs, failure_message(self.name, exc))
        except Exception:  # the hook must never take the worker (or its parent) down
            log.exception("task %s[%s]: could not answer after its failure", self.name, task_id)


def _turn_frames(kwargs: dict, *frames: p.ServerFrame) -> None:
    channel_send(kwargs["reply_channel"], p.TurnFrames(turn_id=kwargs["turn_id"], frames=list(frames)))


def _reply_failed(kwargs: dict, message: str) -> None:
    """The user's message is saved (it was, before the job was queued): save the reply as failed,
    then end the turn (also when the save fails: the session may be gone). A reply started on a
    partial transcript that is not confirmed yet is dropped instead, in silence."""
    from apps.conversations.cancel import turn_drop
    from apps.conversations.models import Message
    from apps.conversations.services import turn_end_status, turn_finish

    if kwargs.get("draft") is not None and turn_drop(turn_id=kwargs["turn_id"]):
        return  # a reply started on a partial transcript, not confirmed: the socket queues a new one
    status, message_id = "failed", None
    try:
        close_old_connections()  # the parent process may hold a connection from an hour ago
        saved = turn_finish(
            turn_id=kwargs["turn_id"],
            session_id=kwargs["session_id"],
            content="",
            emotion="neutral",
            status=Message.Status.FAILED,
            timings={"error": message},
        )
        status, message_id = turn_end_status(reply=saved), str(saved.pk)
    except Exception:
        log.exception("turn %s: could not save the failed reply", kwargs["turn_id"])
    _turn_frames(
        kwargs,
        p.Error(code=p.ErrorCode.LLM_FAILED, message=message),
        p.TurnEnd(status=status, message_id=message_id),
    )


def _transcription_failed(kwargs: dict, message: str) -> None:
    _turn_frames(kwargs, p.Error(code=p.ErrorCode.ASR_FAILED, message=message), p.TurnEnd(status="failed"))


def _partial_failed(kwargs: dict, message: str) -> None:
    """No text: the edge knows no partial is in flight and runs the final pass as usual."""
    channel_send(kwargs["reply_channel"], p.AsrPartialResult(partial_id=kwargs["partial_id"], text="", covered=0))


def _unit_failed(kwargs: dict, message: str) -> None:
    """The unit's text with an error instead of audio, so the units after it still play (as when
    the engine raises)."""
    text, emotion = kwargs["text"], kwargs["emotion"]
    frames = [
        p.TtsStart(text=text, emotion=emotion),
        p.Response(content=text, content_cn=text, emotion=emotion),
        p.Error(code=p.ErrorCode.TTS_FAILED, message=message),
    ]
    event = p.TurnUnit(turn_id=kwargs["turn_id"], seq=kwargs["seq"], frames=frames, last=True)
    channel_send(kwargs["reply_channel"], event)


def _file_failed(kwargs: dict, message: str) -> None:
    error = p.ErrorBody(code=p.ErrorCode.ASR_FAILED, message=message)
    channel_send(kwargs["reply_channel"], p.AsrResult(error=error))


def _job_failed(kwargs: dict, message: str) -> None:
    """A REST speech-to-text job: its row says it failed (the client polls it)."""
    from apps.conversations.services import asr_job_fail

    close_old_connections()  # the parent process may hold a connection from an hour ago
    asr_job_fail(job_id=kwargs["job_id"], code=p.ErrorCode.ASR_FAILED, message=message)


def _render_failed(kwargs: dict, message: str) -> None:
    error = p.ErrorBody(code=p.ErrorCode.TTS_FAILED, message=message)
    channel_send(kwargs["reply_channel"], p.TtsResult(error=error))


def _search_failed(kwargs: dict, message: str) -> None:
    error = p.ErrorBody(code=p.ErrorCode.MEMORY_UNAVAILABLE, message=message)
    channel_send(kwargs["reply_channel"], p.MemoryResults(request_id=kwargs.get("request_id", ""), error=error))


_ANSWERS = {
    "workers.llm.tasks.llm_reply": _reply_failed,
    "workers.asr.tasks.asr_transcribe": _transcription_failed,
    "workers.asr.tasks.asr_partial": _partial_failed,
    "workers.asr.tasks.asr_file": _file_failed,
    "workers.asr.tasks.asr_job": _job_failed,
    "workers.tts.tasks.tts_speak": _unit_failed,
    "workers.tts.tasks.tts_render": _render_failed,
    "workers.embed.tasks.memory_search": _search_failed,
}
