"""A web process's sockets do their database work in a pool of threads (apps/core/dbasync.py): one
socket's round trips to PostgreSQL no longer wait behind every other socket's."""

import asyncio
import threading

import pytest
from django.db import connection, connections
from django.test import override_settings

from apps.core import dbasync

pytestmark = pytest.mark.django_db(transaction=True)


def test_sockets_database_calls_run_at_once_each_on_its_own_connection():
    """Four calls that can only finish together (a barrier of four) all finish: they ran at once, in
    four threads, each with a PostgreSQL connection of its own. In channels' one thread the first would
    wait at the barrier forever (here: until its timeout) and the others behind it."""
    barrier = threading.Barrier(4, timeout=10)

    def work(i: int) -> tuple[int, int]:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            pid = cursor.fetchone()[0]
        barrier.wait()
        return threading.get_ident(), pid

    async def sockets():
        return await asyncio.gather(*(dbasync.db_async(work)(i) for i in range(4)))

    results = asyncio.run(sockets())
    assert len({thread for thread, _ in results}) == 4
    assert len({pid for _, pid in results}) == 4


def test_one_thread_where_the_setting_says_so():
    """(SQLite, the embedded mode, keeps one too: tests/e2e/test_real_model.py runs it.)"""
    dbasync._pool.cache_clear()
    try:
        with override_settings(WEB_DB_THREADS=1):
            assert dbasync._pool() is None
    finally:
        dbasync._pool.cache_clear()
    assert dbasync._pool() is not None


@pytest.fixture
def one_db_thread(monkeypatch):
    """db_async in one thread (the same connection every call), counting Django's health checks."""
    checks = []
    wrapper = type(connections["default"])
    is_usable = wrapper.is_usable

    def counted(self):
        checks.append(threading.get_ident())
        return is_usable(self)

    monkeypatch.setattr(wrapper, "is_usable", counted)
    dbasync._pool.cache_clear()
    with override_settings(WEB_DB_THREADS=1):
        yield checks
    dbasync._pool.cache_clear()


def backend_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def call(fn):
    return asyncio.run(dbasync.db_async(fn)())


def kill(pid: int) -> None:
    with connection.cursor() as cursor:  # the test's own connection, in its own thread
        cursor.execute("SELECT pg_terminate_backend(%s)", [pid])


def test_a_connection_that_answered_a_moment_ago_is_not_health_checked_again(one_db_thread):
    pids = {call(backend_pid) for _ in range(5)}
    assert len(pids) == 1  # one connection, kept
    assert len(one_db_thread) <= 1  # a round trip for the first call after it was made, at most


def test_a_connection_idle_past_the_window_is_checked_and_replaced_when_the_server_dropped_it(
    one_db_thread, monkeypatch
):
    first = call(backend_pid)
    kill(first)
    monkeypatch.setattr(dbasync, "FRESH_S", 0.0)
    second = call(backend_pid)  # no error: the check found it dead and a new one was made
    assert second != first and one_db_thread


def test_a_connection_dropped_within_the_window_fails_one_call_and_the_next_is_replaced(one_db_thread):
    from django.db import OperationalError

    first = call(backend_pid)
    kill(first)
    with pytest.raises(OperationalError):
        call(backend_pid)
    assert call(backend_pid) != first
