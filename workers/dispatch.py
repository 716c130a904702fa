"""Queue a Celery task by name, or run it in-process off the event loop in the embedded mode (periodic ones too).

The one door from apps/ into workers/: callers name the task (`"workers.llm.tasks.llm_reply"`) and this
module imports no task module (an import-linter contract keeps it so). The embedded mode finds the task in
the Celery app's registry, filled by autodiscovery; the scaled mode sends the name to the broker.
"""

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from django.conf import settings
from django.db import close_old_connections

log = logging.getLogger(__name__)
_executor: ThreadPoolExecutor | None = None
_KWARGS_REPR_CHARS = 1024  # as Celery's own kwargsrepr_maxsize


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


def task_named(name: str):
    """The registered task called `name` (the workers' task modules are imported on first use)."""
    from celery import current_app

    if name not in current_app.tasks:
        current_app.loader.import_default_modules()  # runs the autodiscovery of personatalk/celery.py
    return current_app.tasks[name]


def enqueue(name: str, **kwargs) -> None:
    """Run the task registered as `name` with keyword arguments (ids and primitives). Call only after the commit."""
    if settings.TASKS_IN_PROCESS:
        _in_process_executor().submit(_run_in_process, task_named(name), kwargs)
    else:
        from celery import current_app

        # Routed by name (CELERY_TASK_ROUTES). No limits in the message: the worker's own (its
        # settings, its hardware) apply, not the sender's. The arguments' repr (for the worker's log
        # and Flower) is written here: Celery's own `saferepr` walks them character by character, a
        # quarter of a millisecond of a turn's critical path, for keyword arguments that are ids and
        # primitives.
        current_app.send_task(
            name,
            kwargs=kwargs,
            soft_time_limit=None,
            time_limit=None,
            argsrepr="()",
            kwargsrepr=repr(kwargs)[:_KWARGS_REPR_CHARS],
        )


class Beat:
    """The embedded mode's `celery beat`: CELERY_BEAT_SCHEDULE's tasks, run in a thread of this process.

    Each runs in the beat's own thread, one after another (a tick that is still running delays the
    next), never in the executor that runs turns: a first start with many idle sessions must not
    queue hundreds of summaries ahead of someone's reply. The scaled mode runs a beat process instead.
    """

    def __init__(self) -> None:
        from django.core.exceptions import ImproperlyConfigured

        self.entries = []
        for name, entry in settings.CELERY_BEAT_SCHEDULE.items():
            every = entry["schedule"]
            every = every.total_seconds() if isinstance(every, timedelta) else float(every)
            if every <= 0:
                raise ImproperlyConfigured(f"The periodic job {name!r} needs an interval above 0 s, not {every}.")
            self.entries.append([task_named(entry["task"]), every, time.monotonic() + every])
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
