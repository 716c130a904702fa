"""Which turn and session a log line belongs to, from the socket through every worker.

The socket sets them where it handles a turn, each job as it starts (personatalk/celery.py, from the
task's `turn_id` and `session_id`); `TurnContextFilter` (on the console handler, settings.LOGGING)
puts them on every record. Context variables: each socket (an asyncio task) and each job (a thread)
has its own, and `sync_to_async` carries them into the threads it runs code in.
"""

import logging
from contextvars import ContextVar

_turn_id: ContextVar[str | None] = ContextVar("log_turn_id", default=None)
_session_id: ContextVar[str | None] = ContextVar("log_session_id", default=None)
FIELDS = ("turn_id", "session_id")


def log_context_set(*, turn_id: object = None, session_id: object = None) -> None:
    """Lines logged from here on (in this task or thread) belong to this turn and session; None: to none."""
    _turn_id.set(str(turn_id) if turn_id else None)
    _session_id.set(str(session_id) if session_id else None)


def log_context() -> dict[str, str]:
    """The turn and session set now, those that are set."""
    values = {"turn_id": _turn_id.get(), "session_id": _session_id.get()}
    return {name: value for name, value in values.items() if value}


class TurnContextFilter(logging.Filter):
    """Adds `turn_id` and `session_id` to a record when they are set (a JSON formatter prints them as
    fields; `TextFormatter` after the message). A value the caller passed in `extra` is kept."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in log_context().items():
            if not hasattr(record, name):
                setattr(record, name, value)
        return True


class TextFormatter(logging.Formatter):
    """The plain format, with `[turn_id=… session_id=…]` after the message of a line that has them."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        context = " ".join(f"{name}={getattr(record, name)}" for name in FIELDS if getattr(record, name, None))
        return f"{line} [{context}]" if context else line
