"""A web process's sockets do their database work in a pool of threads (apps/core/dbasync.py): one
socket's round trips to PostgreSQL no longer wait behind every other socket's."""

import asyncio
import threading

import pytest
from django.db import connection
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
