"""Queue a Celery task, or run it in-process off the event loop in the embedded mode (periodic ones too)."""

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from django.conf import settings
from django.db import close_old_connections

log = logging.getLogger(__name__)
_executor: ThreadPoolExecutor | None = None


def _in_process_executor() -> ThreadPoolExecutor:
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(max_workers=settings.IN_PROCESS_TASK_THREADS, thread_name_prefix="task")
    return _executor


def _run_in_process(task, kwargs: dict) -> None:
    try:
        result = task.apply(kwargs=kwargs)
        if result.failed():
            log.error("in-process task %s failed: %r", task.name, result.result)
    finally:
        close_old_connections()


def enqueue(task, **kwargs) -> None:
    """Run `task` with keyword arguments (ids and primitives). Call only after the commit."""
    if settings.TASKS_IN_PROCESS:
        _in_process_executor().submit(_run_in_process, task, kwargs)
    else:
        # No limits in the message: the worker's own (its settings, its hardware) apply, not the sender's.
        task.apply_async(kwargs=kwargs, soft_time_limit=None, time_limit=None)


class Beat:
    """The embedded mode's `celery beat`: CELERY_BEAT_SCHEDULE's tasks, run in a thread of this process.

    Each runs in the beat's own thread, one after another (a tick that is still running delays the
    next), never in the executor that runs turns: a first start with many idle sessions must not
    queue hundreds of summaries ahead of someone's reply. The scaled mode runs a beat process instead.
    """

    def __init__(self) -> None:
        from django.core.exceptions import ImproperlyConfigured
        from kombu.utils.imports import symbol_by_name

        self.entries = []
        for name, entry in settings.CELERY_BEAT_SCHEDULE.items():
            every = entry["schedule"]
            every = every.total_seconds() if isinstance(every, timedelta) else float(every)
            if every <= 0:
                raise ImproperlyConfigured(f"The periodic job {name!r} needs an interval above 0 s, not {every}.")
            self.entries.append([symbol_by_name(entry["task"]), every, time.monotonic() + every])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="in-process-beat", daemon=True)

    def _run(self) -> None:
        while self.entries and not self._stop.wait(max(0.0, min(e[2] for e in self.entries) - time.monotonic())):
            for entry in self.entries:
                if entry[2] <= time.monotonic() and not self._stop.is_set():
                    _run_in_process(entry[0], {})
                    entry[2] = max(entry[2] + entry[1], time.monotonic())

    def start(self) -> "Beat":
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop after the task now running, if any."""
        self._stop.set()
        self._thread.join()


def beat_start() -> Beat:
    return Beat().start()
