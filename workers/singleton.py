"""One lazily built object per worker process (a loaded model), shared by its threads."""

import functools
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def process_singleton(build: Callable[[], T]) -> Callable[[], T]:
    """Wrap `build` so the first call builds (under a lock) and every later call returns the same object.

    `getter.reset()` forgets it (the next call builds anew), for settings changed at run time.
    """
    lock, built = threading.Lock(), []

    @functools.wraps(build)
    def get() -> T:
        if not built:
            with lock:
                if not built:
                    built.append(build())
        return built[0]

    def reset() -> None:
        with lock:
            built.clear()

    get.reset = reset
    return get
