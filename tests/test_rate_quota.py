"""`quota_take` counted in Redis (one script: the scaled mode) and in the process's memory (the
embedded mode), to the same rules: the window starts at the first request, a refusal says when it
ends, and a new window counts from zero."""

import itertools
import time

import pytest
from django.core.cache import caches
from django.core.cache.backends.locmem import LocMemCache
from django.core.cache.backends.redis import RedisCache

from apps.accounts import quotas
from apps.accounts.quotas import quota_take
from apps.core.metrics import QUOTA_REFUSALS

users = itertools.count(int(time.time() * 1000) % 10**9)  # ids no other test counts for


@pytest.fixture(params=["redis", "memory"])
def backend(request, monkeypatch):
    if request.param == "memory":  # the embedded mode's cache
        memory = LocMemCache("quota-test", {})
        monkeypatch.setattr(quotas, "caches", {"default": memory})
        monkeypatch.setattr(quotas, "cache", memory)
    else:
        assert isinstance(caches["default"], RedisCache)
    return request.param


def refusals(kind: str) -> float:
    return QUOTA_REFUSALS.labels(kind=kind)._value.get()


def test_the_limit_holds_in_a_window_and_a_new_window_counts_from_zero(backend, settings):
    settings.QUOTA_TURNS, settings.QUOTA_MEMORY_SEARCHES, settings.QUOTA_WINDOW_S = 3, 1, 1.5
    user, refused_before = next(users), refusals("turn")
    assert quota_take(user_id=user, kind="turn") is None  # the window starts here
    started = time.monotonic()
    assert [quota_take(user_id=user, kind="turn") for _ in range(2)] == [None] * 2
    retry_after = quota_take(user_id=user, kind="turn")
    assert retry_after is not None and 0 < retry_after <= 1.5 - (time.monotonic() - started) + 0.02
    assert refusals("turn") == refused_before + 1
    assert quota_take(user_id=next(users), kind="turn") is None  # per user
    assert quota_take(user_id=user, kind="memory_search") is None  # per kind: its first
    assert quota_take(user_id=user, kind="memory_search") is not None
    time.sleep(retry_after + 0.05)
    assert [quota_take(user_id=user, kind="turn") for _ in range(3)] == [None] * 3  # the window ended
    assert quota_take(user_id=user, kind="turn") is not None


def test_a_limit_of_zero_counts_nothing(backend, settings):
    settings.QUOTA_TURNS = 0
    user = next(users)
    assert all(quota_take(user_id=user, kind="turn") is None for _ in range(50))
