"""Shared fixtures: the real PostgreSQL and Redis, a real Celery worker, users, tokens, characters."""

import os
import socket
import time
from pathlib import Path

import pytest
import redis
from django.conf import settings

from tests import stack

LOG_DIR = Path(settings.VAR_DIR) / "logs"


def _reachable(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=1).close()
        return True
    except OSError:
        return False


def pytest_sessionstart(session):
    missing = [name for name, port in (("PostgreSQL", 5432), ("Redis", 6379)) if not _reachable("127.0.0.1", port)]
    if missing:
        pytest.exit(f"{' and '.join(missing)} not listening on 127.0.0.1; `make test` starts them.", returncode=3)
    redis.Redis.from_url(settings.REDIS_URL).flushdb()


@pytest.fixture(autouse=True)
def _fresh_channel_layer():
    """A channel layer per test: each async test has its own event loop, and channels_redis keeps
    asyncio locks bound to the loop that used them (one left locked by a closed loop starves every
    socket of the next test). Daphne runs one loop, so the product never sees this."""
    from channels.layers import channel_layers

    channel_layers.backends.clear()
    yield


@pytest.fixture(scope="session", autouse=True)
def chroma_server():
    """A real Chroma server for the vector index (every turn retrieves memories), emptied first."""
    proc = stack.start_chroma(url=settings.CHROMA_URL, path=Path(settings.VAR_DIR) / "chroma", log_dir=LOG_DIR)
    chroma_empty()
    yield settings.CHROMA_URL
    if proc is not None:
        proc.stop()


def chroma_empty() -> None:
    """Drop every collection: the test database starts empty, so must the index derived from it."""
    from apps.memory.index import chroma_client, forget_handles

    client = chroma_client()
    for collection in client.list_collections():
        client.delete_collection(getattr(collection, "name", collection))
    forget_handles()


@pytest.fixture(scope="session")
def live_env(django_db_setup, django_db_blocker, chroma_server) -> dict:
    """Environment for subprocesses (Daphne, workers) that share the test database and Redis."""
    from django.db import connection

    name = connection.settings_dict["NAME"]
    base = os.environ["DATABASE_URL"].rsplit("/", 1)[0]
    return {
        "DJANGO_SETTINGS_MODULE": "personatalk.settings_test",
        "DATABASE_URL": f"{base}/{name}",
        "REDIS_URL": settings.REDIS_URL,
        "CHROMA_URL": settings.CHROMA_URL,
        "LLM_BACKEND": "scripted",
        "PYTHONUNBUFFERED": "1",
    }


@pytest.fixture(scope="session")
def llm_worker(live_env):
    """A real Celery worker on queue `llm` with the fast deterministic engine; it logs JSON lines
    (LOG_FORMAT=json) and serves its metrics on `metrics_port`."""
    proc = stack.start_worker(queues="llm", env={**live_env, "LOG_FORMAT": "json"}, log_dir=LOG_DIR)
    yield proc
    proc.stop()


@pytest.fixture(scope="session")
def voice_worker(live_env):
    """A real Celery worker on queues `asr`, `asr_partial` and `tts` with Whisper tiny.en and Piper."""
    proc = stack.start_worker(queues="asr,asr_partial,tts", env=live_env, log_dir=LOG_DIR)
    yield proc
    proc.stop()


@pytest.fixture(scope="session")
def speech_api_worker(live_env):
    """A real Celery worker on the REST speech queues `tts_api` and `asr_api` (Piper, Whisper tiny.en)."""
    proc = stack.start_worker(queues="tts_api,asr_api", env=live_env, log_dir=LOG_DIR)
    yield proc
    proc.stop()


_memory_workers: list = []  # the session's memory worker, once a test started it


@pytest.fixture(scope="session")
def memory_worker(live_env):
    """A real Celery worker on queues `embed` and `batch` with all-MiniLM-L6-v2."""
    proc = stack.start_worker(queues="embed,batch", env=live_env, log_dir=LOG_DIR, name="worker-memory")
    _memory_workers.append(proc)
    yield proc
    _memory_workers.clear()
    proc.stop()


@pytest.fixture(autouse=True)
def _memory_jobs_finish(request):
    """The memory jobs a test queued (one memory_extract per turn, re-embedding chunks) end with it:
    run before its rows are flushed (a worker mid-job deadlocked the flush's TRUNCATE), dropped if
    no worker will ever take them (they would hold up every later test)."""
    yield
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    queues = ("embed", "batch")
    if _memory_workers:
        busy = bool({"llm_worker", "memory_worker"} & set(request.fixturenames))
        if busy:
            time.sleep(0.2)  # the LLM worker queues a turn's memory_extract just after the reply's last frame
        deadline = time.monotonic() + 30
        while any(broker.llen(queue) for queue in queues) and time.monotonic() < deadline:
            busy = True
            time.sleep(0.05)
        if busy:
            time.sleep(0.1)  # the last one taken: a memory_extract takes ms, a finished job's chunk returns at once
    broker.delete(*queues)


@pytest.fixture
def user(django_user_model):
    return django_user_model.objects.create_user(username="alice", password="pw")


@pytest.fixture
def api_key(user) -> str:
    from apps.accounts.services import token_create

    return token_create(user=user, name="test").key


@pytest.fixture
def character():
    from apps.characters.models import Character

    return Character.objects.create(
        name="Nova",
        slug="nova",
        persona="You are Nova, a cheerful astronomy guide.",
        greeting="Hi! I'm Nova.",
        is_published=True,
    )


@pytest.fixture
def draft_character():
    from apps.characters.models import Character

    return Character.objects.create(name="Draft", slug="draft", persona="You are a draft.", is_published=False)
