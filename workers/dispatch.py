"""Queue a Celery task, or run it in-process off the event loop in the embedded mode."""

import logging
from concurrent.futures import ThreadPoolExecutor

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
        task.apply_async(kwargs=kwargs)
