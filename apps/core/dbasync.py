"""The database from async code: `db_async(fn)` is channels' `database_sync_to_async(fn)`, run in a
pool of the web process's own where the database takes concurrent connections (PostgreSQL).

channels runs every such call in one thread per process (asgiref's thread-sensitive executor), so
each socket's database work waits for every other socket's: at 500 sockets that thread was never idle,
two fifths of its time waiting on PostgreSQL and Redis round trips (a turn's access check, its line's
INSERT and COMMIT, the job's publish), and a typed line waited ~1 s for `thinking`. In WEB_DB_THREADS
threads those waits overlap; each thread keeps its own connection (DB_CONN_MAX_AGE), so a web process
holds up to that many. A socket still awaits its own calls one at a time, in order.

SQLite (the embedded mode) keeps the one thread: its writers take turns at a file lock anyway.
"""

import functools
from concurrent.futures import ThreadPoolExecutor

from channels.db import database_sync_to_async
from django.conf import settings


@functools.lru_cache(maxsize=1)
def _pool() -> ThreadPoolExecutor | None:
    if settings.DATABASES["default"]["ENGINE"].endswith("sqlite3") or settings.WEB_DB_THREADS <= 1:
        return None
    return ThreadPoolExecutor(max_workers=settings.WEB_DB_THREADS, thread_name_prefix="db")


def db_async(fn):
    """`fn` (sync, touches the database) as a coroutine function, run off the event loop."""
    pool = _pool()
    if pool is None:
        return database_sync_to_async(fn)
    return database_sync_to_async(fn, thread_sensitive=False, executor=pool)
