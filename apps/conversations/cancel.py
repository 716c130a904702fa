"""Cancellation flags that streaming loops check (Django cache: Redis when scaled, memory embedded)."""

import contextlib
import threading
import time
from collections.abc import Callable, Iterator

from django.core.cache import cache

_TTL_S = 600


def _key(turn_id) -> str:
    return f"turn-cancel:{turn_id}"


def turn_cancel(*, turn_id) -> None:
    """Ask the jobs of a turn to stop at their next check."""
    cache.set(_key(turn_id), time.time(), _TTL_S)


def turn_is_cancelled(*, turn_id) -> bool:
    return bool(cache.get(_key(turn_id)))


class _Watch:
    """The cancel flags of every turn this process is streaming, read together: one read of the cache
    (an MGET) per interval for all of them, by whichever turn asks first once it has passed (or once a
    turn that has never been read asks), instead of a GET per turn per interval (a worker streaming 30
    turns read 300 a second: 6% of its GIL).

    A turn whose flag has been read does not wait for a read another stream is making: it goes on with
    its flag as last read (at most one read older). Waiting there was a quarter of an `llm` worker's
    threads' time at 500 sockets, every stream queued behind one MGET."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.cancelled: dict[str, bool | None] = {}  # turn id -> its flag as last read (None: not yet)
        self.watchers: dict[str, int] = {}  # turn id -> its streams in this process (a redelivery's too)
        self.read_at = 0.0

    def check(self, turn_id: str, every_s: float) -> bool:
        known = self.cancelled.get(turn_id)
        if known is not None and (time.monotonic() - self.read_at < every_s or not self.lock.acquire(blocking=False)):
            return known  # read lately, or being read now by another stream
        if known is None:
            self.lock.acquire()  # never read: its first check waits for a read that includes it
        try:
            now = time.monotonic()
            if now - self.read_at >= every_s or self.cancelled.get(turn_id) is None:
                turns = list(self.cancelled)
                found = cache.get_many([_key(turn) for turn in turns])
                self.cancelled = {turn: bool(found.get(_key(turn))) for turn in turns}
                self.read_at = now
            return bool(self.cancelled.get(turn_id))
        finally:
            self.lock.release()


_watch = _Watch()


@contextlib.contextmanager
def turn_cancel_watch(*, turn_id, every_s: float) -> Iterator[Callable[[], bool]]:
    """While the turn streams: a check of its cancel flag, read at the first check (a draft reply
    superseded while queued must not run its prefill) and then at most every `every_s`, in one read
    with the process's other streaming turns."""
    turn_id = str(turn_id)
    with _watch.lock:
        _watch.watchers[turn_id] = _watch.watchers.get(turn_id, 0) + 1
        _watch.cancelled.setdefault(turn_id, None)
    try:
        yield lambda: _watch.check(turn_id, every_s)
    finally:
        with _watch.lock:
            _watch.watchers[turn_id] -= 1
            if not _watch.watchers[turn_id]:
                del _watch.watchers[turn_id], _watch.cancelled[turn_id]


def turn_stop_ms(*, turn_id) -> float | None:
    """Milliseconds since the turn was cancelled (None if it was not): how long a job took to notice."""
    cancelled_at = cache.get(_key(turn_id))
    return round((time.time() - cancelled_at) * 1000, 1) if cancelled_at else None


# --- a session's reply wanted: an LLM worker prefilling ahead for it gives way -----------------


def _wanted_key(session_id) -> str:
    return f"session-reply-wanted:{session_id}"


def session_reply_wanted(*, session_id) -> None:
    """A reply job for the session is queued (now)."""
    cache.set(_wanted_key(session_id), time.time(), _TTL_S)


def session_reply_wanted_since(*, session_id, since: float) -> bool:
    """Whether a reply job for the session was queued after `since` (wall clock)."""
    return (cache.get(_wanted_key(session_id)) or 0.0) > since


# --- a reply started on a partial transcript: kept or dropped, decided once ----------------------


def _settled_key(turn_id) -> str:
    return f"turn-settled:{turn_id}"


def turn_confirm(*, turn_id, speech_end_at: float) -> bool:
    """The final transcript confirms a reply started on a partial one (its user message is saved):
    the job may save and speak it. False when the job had already dropped it (cancelled, failed, or
    tired of waiting); the first of the two to decide wins (an atomic add)."""
    cache.add(_settled_key(turn_id), {"confirmed": speech_end_at}, _TTL_S)
    return "confirmed" in (cache.get(_settled_key(turn_id)) or {})


def turn_drop(*, turn_id) -> bool:
    """Drop a reply started on a partial transcript, unless it is confirmed already; True when dropped."""
    cache.add(_settled_key(turn_id), {"dropped": time.time()}, _TTL_S)
    return "dropped" in (cache.get(_settled_key(turn_id)) or {})


def turn_confirmed_wait(*, turn_id, timeout_s: float, poll_s: float = 0.02) -> float | None:
    """Wait (bounded) until a reply started on a partial transcript is confirmed or dropped.

    Returns the end of speech (wall clock) when it is confirmed; None when it is dropped, which a
    cancellation or the timeout decides here if nobody has yet.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        settled = cache.get(_settled_key(turn_id)) or {}
        if "confirmed" in settled:
            return settled["confirmed"]
        if "dropped" in settled:
            return None
        if turn_is_cancelled(turn_id=turn_id) or time.monotonic() >= deadline:
            if turn_drop(turn_id=turn_id):
                return None
            continue  # confirmed at the same moment: read it
        time.sleep(poll_s)


# --- one HTTP turn at a time per session ---------------------------------------------------------


def _session_turn_key(session_id) -> str:
    return f"session-turn:{session_id}"


def session_turn_claim(*, session_id, turn_holder: str, ttl_s: float) -> bool:
    """Hold the session for one turn (an atomic add); False when another turn holds it. The hold
    lapses after `ttl_s` should its holder die without releasing it."""
    return bool(cache.add(_session_turn_key(session_id), turn_holder, max(1, int(ttl_s) + 1)))


def session_turn_release(*, session_id, turn_holder: str) -> None:
    """Let the session go, unless the hold lapsed and another turn holds it now."""
    if cache.get(_session_turn_key(session_id)) == turn_holder:
        cache.delete(_session_turn_key(session_id))
