import time

import pytest
import redis
from django.conf import settings

from tests.conftest import chroma_empty


@pytest.fixture(autouse=True)
def _empty_index():
    """Each test's database starts empty (rows are flushed), so the derived index must too; and the
    jobs a test queued (one memory_extract per turn) finish before its rows are flushed, or the
    flush's TRUNCATE deadlocks with them."""
    chroma_empty()
    yield
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    deadline = time.monotonic() + 30
    while any(broker.llen(queue) for queue in ("embed", "batch")) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.1)  # the last one taken (a few ms; a chunk of a finished job returns at once)


@pytest.fixture
def other_user(django_user_model):
    return django_user_model.objects.create_user(username="bob", password="pw")
