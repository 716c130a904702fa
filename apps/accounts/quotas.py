"""Abuse quotas: per-user rates, open sockets per user and per client address.

Counted in the Django cache: Redis in the scaled mode, so every web process sees the same counts;
the process's memory in the embedded mode (one process). Every limit is a setting; 0 turns it off.

- Rates (`quota_take`): one window of QUOTA_WINDOW_S per user and kind, starting at the first
  request, counted with an atomic increment on a key that expires with the window: in Redis one
  script (a turn's quota is on its critical path: one round trip, not five), elsewhere Django's
  `cache.add` + `cache.incr`. The answer to a refused request is when the window ends.
- Open sockets (`socket_slot_claim`): a cap of N is N slot keys; a socket holds one (an atomic
  `cache.add`) with a TTL it refreshes while it lives (`socket_slot_refresh`), and deletes on
  disconnect. A web process that dies without closing its sockets frees their slots within
  QUOTA_SOCKET_TTL_S, so counts never leak.
"""

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache, caches
from django.core.cache.backends.redis import RedisCache
from redis.commands.core import Script

from apps.core.metrics import QUOTA_REFUSALS

RATE_LIMITS = {
    "turn": "QUOTA_TURNS",
    "memory_search": "QUOTA_MEMORY_SEARCHES",
    "speech": "QUOTA_SPEECH_REQUESTS",
}
# Caps on things held open: sockets per user and per address, HTTP turns running per user.
SOCKET_LIMITS = {
    "user": "QUOTA_SOCKETS_PER_USER",
    "address": "QUOTA_SOCKETS_PER_ADDRESS",
    "turn_in_flight": "QUOTA_TURNS_IN_FLIGHT",
}


class QuotaExceeded(Exception):
    """Raised by `socket_slot_claim` when every slot is held; `retry_after` in seconds."""

    def __init__(self, kind: str, retry_after: float):
        super().__init__(f"{kind} quota exceeded; retry after {retry_after} s")
        self.kind, self.retry_after = kind, retry_after


# Count one in the window's key, which the first count starts (it expires with the window);
# answers the count and the window's milliseconds left.
_COUNT = Script(
    None,
    b"""
local count = redis.call('INCR', KEYS[1])
local left = redis.call('PTTL', KEYS[1])
if left < 0 then
    redis.call('PEXPIRE', KEYS[1], ARGV[1])
    left = tonumber(ARGV[1])
end
return {count, left}
""",
)


def quota_take(*, user_id: int, kind: str) -> float | None:
    """Count one `kind` ("turn", "memory_search", "speech") for the user.

    None when it is within the quota, else the seconds until the window ends and one is allowed.
    A refused request counts too (the window ends at the same time either way).
    """
    limit = getattr(settings, RATE_LIMITS[kind])
    if limit <= 0:
        return None
    backend = caches["default"]
    if isinstance(backend, RedisCache):
        key = backend.make_and_validate_key(f"quota:{kind}:{user_id}:window")
        window_ms = max(1, round(settings.QUOTA_WINDOW_S * 1000))
        count, left_ms = _COUNT(keys=[key], args=[window_ms], client=backend._cache.get_client(write=True))
        return _refused(kind, count, limit, left_ms / 1000)
    return _quota_take_in_cache(user_id=user_id, kind=kind, limit=limit)


def _refused(kind: str, count: int, limit: int, left_s: float) -> float | None:
    if count <= limit:
        return None
    QUOTA_REFUSALS.labels(kind=kind).inc()
    return round(max(left_s, 0.01), 2)


def _quota_take_in_cache(*, user_id: int, kind: str, limit: int) -> float | None:
    """`quota_take` with Django's cache API (the embedded mode's memory cache)."""
    window = settings.QUOTA_WINDOW_S
    ttl = math.ceil(window) + 1
    start_key = f"quota:{kind}:{user_id}"
    for _ in range(3):  # the window may end between two calls: then count in the next one
        now = time.time()
        cache.add(start_key, now, timeout=ttl)
        start = cache.get(start_key)
        if start is None or now - start >= window:
            if start is not None:
                cache.delete(start_key)  # outlived its window by the TTL's rounding
            continue
        count_key = f"{start_key}:{start!r}"
        cache.add(count_key, 0, timeout=ttl)
        try:
            count = cache.incr(count_key)
        except ValueError:  # the counter expired just now
            continue
        return _refused(kind, count, limit, start + window - now)
    return None  # the cache keeps dropping the window: let the request through rather than fail it


@dataclass(frozen=True)
class SocketSlot:
    """One open socket's place under a cap (see `socket_slot_claim`)."""

    key: str
    holder: str


def socket_slot_claim(*, kind: str, owner: object, holder: str) -> SocketSlot | None:
    """Take one of the open-socket slots of `owner` (kind "user": a user id; "address": a client address).

    `holder` names the socket (its channel name). None when the cap is off; QuotaExceeded when
    every slot is held. The caller refreshes the slot while the socket lives and releases it.
    Kind "turn_in_flight" (owner: a user id) caps the HTTP turns a user has running, the same way.
    """
    limit = getattr(settings, SOCKET_LIMITS[kind])
    if limit <= 0:
        return None
    keys = [f"sockets:{kind}:{owner}:{i}" for i in range(limit)]
    held = cache.get_many(keys)
    for key in keys:
        if key not in held and cache.add(key, holder, timeout=settings.QUOTA_SOCKET_TTL_S):
            return SocketSlot(key, holder)
    QUOTA_REFUSALS.labels(kind=kind).inc()
    raise QuotaExceeded(kind, retry_after=float(settings.QUOTA_SOCKET_TTL_S))


def socket_slot_refresh(*, slot: SocketSlot) -> None:
    """Keep the slot for another QUOTA_SOCKET_TTL_S (call at least every third of it)."""
    if not cache.touch(slot.key, timeout=settings.QUOTA_SOCKET_TTL_S):
        cache.add(slot.key, slot.holder, timeout=settings.QUOTA_SOCKET_TTL_S)  # lapsed: take it back if free


def socket_slots_refresh(*, slots: Iterable[SocketSlot], still_held: Callable[[SocketSlot], bool]) -> None:
    """`socket_slot_refresh` for many slots at once (a web process's sockets): one round trip where
    the cache is Redis (a pipeline of EXPIREs); a lapsed slot is taken back if it is free and its
    socket `still_held` it (one closed meanwhile deleted its key: it must stay deleted)."""
    slots, ttl, backend = list(slots), settings.QUOTA_SOCKET_TTL_S, caches["default"]
    if slots and isinstance(backend, RedisCache):
        # Django's cache API touches one key a call; its Redis client gives the pipeline.
        pipe = backend._cache.get_client(write=True).pipeline(transaction=False)
        for slot in slots:
            pipe.expire(backend.make_and_validate_key(slot.key), ttl)
        lapsed = [slot for slot, kept in zip(slots, pipe.execute(), strict=True) if not kept]
    else:
        lapsed = [slot for slot in slots if not backend.touch(slot.key, timeout=ttl)]
    for slot in lapsed:
        if still_held(slot):
            backend.add(slot.key, slot.holder, timeout=ttl)


def socket_slot_release(*, slot: SocketSlot) -> None:
    """Free the slot, unless it lapsed and another socket holds it now."""
    if cache.get(slot.key) == slot.holder:
        cache.delete(slot.key)
