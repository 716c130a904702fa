"""Cancellation flags that streaming loops check (Django cache: Redis when scaled, memory embedded)."""

import time

from django.core.cache import cache

_TTL_S = 600


def _key(turn_id) -> str:
    return f"turn-cancel:{turn_id}"


def turn_cancel(*, turn_id) -> None:
    """Ask the jobs of a turn to stop at their next check."""
    cache.set(_key(turn_id), time.time(), _TTL_S)


def turn_is_cancelled(*, turn_id) -> bool:
    return bool(cache.get(_key(turn_id)))


def turn_stop_ms(*, turn_id) -> float | None:
    """Milliseconds since the turn was cancelled (None if it was not): how long a job took to notice."""
    cancelled_at = cache.get(_key(turn_id))
    return round((time.time() - cancelled_at) * 1000, 1) if cancelled_at else None
