"""Celery tasks of the `llm` queue: thin callers of apps.conversations.turns."""

from celery import shared_task
from django.conf import settings

from apps.conversations.turns import prompt_prefill, text_turn_run
from apps.core.events import channel_send
from apps.memory.selectors import memories_recall
from workers.job_failure import AnsweringTask
from workers.llm.engines import get_engine


@shared_task(
    name="workers.llm.tasks.llm_reply",
    base=AnsweringTask,  # a reply killed at the hard limit still ends its turn
    acks_late=True,  # idempotent: a turn whose reply is saved is skipped
    soft_time_limit=settings.LLM_SOFT_TIME_LIMIT_S,
    time_limit=settings.LLM_HARD_TIME_LIMIT_S,
)
def llm_reply(
    *,
    turn_id: str,
    session_id: str,
    reply_channel: str,
    text_deltas: bool,
    submitted_at: float,
    speak: dict | None = None,
    speech_end_at: float | None = None,
    draft: str | None = None,
    extra_instructions: str = "",
    max_new_tokens: int | None = None,
) -> None:
    """Write and stream the character's reply for one turn (spoken when `speak` is given; to `draft`,
    a partial transcript not yet confirmed, when given; with a client's `extra_instructions` and a
    smaller `max_new_tokens`, from the HTTP API)."""
    text_turn_run(
        turn_id=turn_id,
        session_id=session_id,
        reply_channel=reply_channel,
        text_deltas=text_deltas,
        submitted_at=submitted_at,
        speak=speak,
        speech_end_at=speech_end_at,
        draft=draft,
        extra_instructions=extra_instructions,
        max_new_tokens=max_new_tokens,
        engine=get_engine(),
        recall=memories_recall,
        send=channel_send,
    )


@shared_task(name="workers.llm.tasks.llm_prefill", soft_time_limit=30, time_limit=40)
def llm_prefill(*, session_id: str, requested_at: float = 0.0) -> int:
    """Prefill what a session's next prompt begins with before its first turn (a socket just opened it)."""
    return prompt_prefill(session_id=session_id, engine=get_engine(), requested_at=requested_at)
