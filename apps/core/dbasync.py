"""The database from async code: `db_async(fn)` is channels' `database_sync_to_async(fn)`, run in a
pool of the web process's own where the database takes concurrent connections (PostgreSQL).

channels runs every such call in one thread per process (asgiref's thread-sensitive executor), so
each socket's database work waits for every other socket's: at 500 sockets that thread was never idle,
two fifths of its time waiting on PostgreSQL and Redis round trips (a turn's access check, its line's
INSERT and COMMIT, the job's publish), and a typed line waited ~1 s for `thinking`. In WEB_DB_THREADS
threads those waits overlap; each thread keeps its own connection (DB_CONN_MAX_AGE), so a web process
holds up to that many. A socket still awaits its own calls one at a time, in order.

SQLite (the embedded mode) keeps the one thread: its writers take turns at a file lock anyway.

Before each call, as Django before a request, a connection past its age or broken by an error is
closed (`connections_checked`, which Celery's jobs run too), but Django's health check (a `SELECT 1`
round trip before the call's first query) is skipped for a connection that answered a query in the
last FRESH_S seconds: at 500 sockets those checks were a PostgreSQL round trip on every database hop
of every socket. A connection the server dropped within that window fails one call; the error marks
it, and the next call checks and replaces it.
"""

import functools
import time
from concurrent.futures import ThreadPoolExecutor

from channels.db import DatabaseSyncToAsync
from django.conf import settings
from django.db import close_old_connections, connections

FRESH_S = 5.0


def _answered(execute, sql, params, many, context):
    result = execute(sql, params, many, context)
    context["connection"].answered_at = time.monotonic()
    return result


def connections_checked() -> None:
    """Before a request or a job: Django's `close_old_connections`, less the health check's round trip
    for a connection that answered a query in the last FRESH_S seconds."""
    close_old_connections()
    now = time.monotonic()
    for conn in connections.all():
        if _answered not in conn.execute_wrappers:  # a thread's connection, the first time it is seen here
            conn.execute_wrappers.insert(0, _answered)  # outermost: `execute_wrapper()` blocks pop from the end
        elif conn.connection is not None and now - getattr(conn, "answered_at", -FRESH_S) < FRESH_S:
            conn.health_check_done = True


class _DatabaseSyncToAsync(DatabaseSyncToAsync):
    def thread_handler(self, loop, *args, **kwargs):
        connections_checked()
        try:
            return super(DatabaseSyncToAsync, self).thread_handler(loop, *args, **kwargs)
        finally:
            close_old_connections()


@functools.lru_cache(maxsize=1)
def _pool() -> ThreadPoolExecutor | None:
    if settings.DATABASES["default"]["ENGINE"].endswith("sqlite3") or settings.WEB_DB_THREADS <= 1:
        return None
    return ThreadPoolExecutor(max_workers=settings.WEB_DB_THREADS, thread_name_prefix="db")


def db_async(fn):
    """`fn` (sync, touches the database) as a coroutine function, run off the event loop."""
    pool = _pool()
    if pool is None:
        return _DatabaseSyncToAsync(fn)
    return _DatabaseSyncToAsync(fn, thread_sensitive=False, executor=pool)
