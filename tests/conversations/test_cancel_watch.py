"""The streaming turns of one process read their cancel flags together: one cache read an interval."""

import time
import uuid

from django.core.cache import cache

from apps.conversations import cancel
from apps.conversations.cancel import turn_cancel, turn_cancel_watch


def test_turns_streaming_at_once_read_their_flags_in_one_read_and_each_sees_its_own(monkeypatch):
    reads = []
    get_many = cache.get_many

    def counted(keys, *args, **kwargs):
        reads.append(len(keys))
        return get_many(keys, *args, **kwargs)

    monkeypatch.setattr(cache, "get_many", counted)
    a, b, c = (f"turn-{uuid.uuid4()}" for _ in range(3))
    turn_cancel(turn_id=c)  # stopped while queued (a draft superseded): seen at its first check
    with (
        turn_cancel_watch(turn_id=a, every_s=0.5) as a_cancelled,
        turn_cancel_watch(turn_id=b, every_s=0.5) as b_cancelled,
        turn_cancel_watch(turn_id=c, every_s=0.5) as c_cancelled,
    ):
        assert c_cancelled() and not a_cancelled() and not b_cancelled()
        assert reads == [3]  # one read for the three
        turn_cancel(turn_id=a)
        assert not a_cancelled() and reads == [3]  # within the interval: as last read
        time.sleep(0.6)
        assert (a_cancelled(), b_cancelled()) == (True, False)
        assert reads == [3, 3]
        with turn_cancel_watch(turn_id=b, every_s=0.5):  # the same turn twice in the process (a redelivery)
            pass
        turn_cancel(turn_id=b)
        time.sleep(0.6)
        assert b_cancelled()  # still read: the other stream's end left it watched
    assert cancel._watch.cancelled == {} and cancel._watch.watchers == {}  # gone from the process's reads


def test_a_turn_already_read_goes_on_with_its_flag_while_another_stream_reads(monkeypatch):
    """A stream never waits on another's read in flight (it would queue every stream behind one MGET);
    a turn never read yet does wait, so a stop sent while it was queued is seen at its first check."""
    import threading

    entered, release = threading.Event(), threading.Event()

    class SlowRead:  # the cache, its reads held until released (in every thread: the proxy is per thread)
        def __getattr__(self, name):
            return getattr(cache, name)

        def get_many(self, keys, *args, **kwargs):
            entered.set()
            release.wait(5)
            return cache.get_many(keys, *args, **kwargs)

    a, b = (f"turn-{uuid.uuid4()}" for _ in range(2))
    with turn_cancel_watch(turn_id=a, every_s=0.05) as a_cancelled:
        assert not a_cancelled()  # read once
        turn_cancel(turn_id=a)
        time.sleep(0.06)
        monkeypatch.setattr(cancel, "cache", SlowRead())
        with turn_cancel_watch(turn_id=b, every_s=0.05) as b_cancelled:
            first = threading.Thread(target=b_cancelled)  # b's first read, held in Redis
            first.start()
            assert entered.wait(5)
            started = time.monotonic()
            assert a_cancelled() is False  # as last read, at once
            assert time.monotonic() - started < 1
            second = threading.Thread(target=b_cancelled)  # never read yet: waits for the read
            second.start()
            second.join(0.2)
            assert second.is_alive()
            release.set()
            first.join(5)
            second.join(5)
        monkeypatch.setattr(cancel, "cache", cache)
        time.sleep(0.06)
        assert a_cancelled()  # the next read sees the stop
