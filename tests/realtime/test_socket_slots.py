"""Open-socket places (apps.accounts.quotas) refreshed many at once, as a web process does for its sockets."""

from django.core.cache import cache

from apps.accounts import quotas


def test_refreshing_many_places_at_once_takes_back_a_lapsed_one_that_is_free(settings):
    settings.QUOTA_SOCKET_TTL_S = 30
    held, lapsed = quotas.SocketSlot("sockets:test:7:0", "a"), quotas.SocketSlot("sockets:test:7:1", "b")
    cache.set(held.key, "a", timeout=2)
    cache.delete(lapsed.key)
    quotas.socket_slots_refresh(slots=[held, lapsed])
    redis = cache._cache.get_client()
    assert [redis.ttl(cache.make_and_validate_key(s.key)) > 20 for s in (held, lapsed)] == [True, True]
    assert (cache.get(held.key), cache.get(lapsed.key)) == ("a", "b")
    cache.delete_many([held.key, lapsed.key])
