"""The streaming turns of one process read their cancel flags together: one cache read an interval."""

import time

from django.core.cache import cache

from apps.conversations import cancel
from apps.conversations.cancel import turn_cancel, turn_cancel_watch


def test_turns_streaming_at_once_read_their_flags_in_one_read_and_each_sees_its_own(monkeypatch):
    reads = []
    get_many = cache.get_many

    def counted(keys, *args, **kwargs):
        reads.append(sorted(keys))
        return get_many(keys, *args, **kwargs)

    monkeypatch.setattr(cache, "get_many", counted)
    with (
        turn_cancel_watch(turn_id="turn-a", every_s=0.05) as a_cancelled,
        turn_cancel_watch(turn_id="turn-b", every_s=0.05) as b_cancelled,
    ):
        assert not a_cancelled() and reads == []  # not before the interval: the prefill has just begun
        turn_cancel(turn_id="turn-a")
        time.sleep(0.06)
        assert (a_cancelled(), b_cancelled()) == (True, False)
        assert reads == [["turn-cancel:turn-a", "turn-cancel:turn-b"]]  # one read for both
        turn_cancel(turn_id="turn-b")
        assert not b_cancelled()  # within the interval: as last read
        time.sleep(0.06)
        assert b_cancelled() and len(reads) == 2
    assert cancel._watch.cancelled == {}  # the turns are gone from the process's reads
