"""Open-socket places (apps.accounts.quotas) refreshed many at once, as a web process does for its sockets."""

from django.core.cache import cache, caches

from apps.accounts import quotas


def test_refreshing_many_places_at_once_is_one_pipeline_and_takes_back_a_lapsed_one_still_held(settings, monkeypatch):
    settings.QUOTA_SOCKET_TTL_S = 30
    backend = caches["default"]
    held, lapsed, released = (quotas.SocketSlot(f"sockets:test:7:{i}", holder) for i, holder in enumerate("abc"))
    cache.set(held.key, "a", timeout=2)
    cache.delete_many([lapsed.key, released.key])

    def one_by_one(*args, **kwargs):
        raise AssertionError("touched key by key: Redis takes them in one pipeline")

    monkeypatch.setattr(backend, "touch", one_by_one)
    quotas.socket_slots_refresh(slots=[held, lapsed, released], still_held=lambda slot: slot is not released)
    redis = backend._cache.get_client()
    assert [redis.ttl(backend.make_and_validate_key(s.key)) > 20 for s in (held, lapsed)] == [True, True]
    assert (cache.get(held.key), cache.get(lapsed.key)) == ("a", "b")
    assert cache.get(released.key) is None  # its socket closed while the refresh ran: it stays free
    cache.delete_many([held.key, lapsed.key])
