"""The scaled mode's cache (apps/core/cache.py): Django's Redis cache with its client built once."""

from django.conf import settings
from django.core.cache import cache, caches

from apps.core.cache import SharedClientRedisCache


def test_the_settings_use_it_and_it_behaves_as_django_s():
    assert isinstance(caches["default"], SharedClientRedisCache)
    cache.delete("cache-test")
    assert cache.add("cache-test", 1, timeout=5)
    assert not cache.add("cache-test", 2, timeout=5)
    assert cache.incr("cache-test") == 2
    assert cache.get("cache-test") == 2
    cache.delete("cache-test")
    assert cache.get("cache-test") is None


def test_one_client_serves_every_call():
    backend = SharedClientRedisCache(settings.CACHES["default"]["LOCATION"], {})
    client = backend._cache.get_client("a", write=True)
    assert backend._cache.get_client("b") is client
    backend.set("cache-test-shared", "x", timeout=5)
    assert backend.get("cache-test-shared") == "x"
    backend.delete("cache-test-shared")
