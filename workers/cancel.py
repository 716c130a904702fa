"""Cancellation flags that streaming loops check (Django cache: Redis when scaled, memory embedded)."""

from django.core.cache import cache

_TTL_S = 600


def _key(turn_id) -> str:
    return f"turn-cancel:{turn_id}"


def turn_cancel(*, turn_id) -> None:
    """Ask the jobs of a turn to stop at their next check."""
    cache.set(_key(turn_id), 1, _TTL_S)


def turn_is_cancelled(*, turn_id) -> bool:
    return bool(cache.get(_key(turn_id)))
