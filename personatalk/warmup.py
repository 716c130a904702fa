"""The embedded mode's warm-up: load every model the web process runs before it starts listening.

The embedded mode runs its jobs in threads of the Daphne process, and an engine loads on first
use: the first reply's first token took 4.4 s against 0.34 s for later ones. Daphne imports the
application before it binds its port, so warming here means the server answers only once warm,
and `make run` announces the URL when /health answers.
"""

import logging
import time

from django.conf import settings
from django.db import connections

log = logging.getLogger(__name__)


def models_warm() -> dict[str, float]:
    """Load (and run once) the LLM engine, the embedder with the memory index, Whisper, Piper and the
    VAD; returns seconds per step. A missing model fails here, naming its setting."""
    steps: dict[str, float] = {}

    def step(name: str, fn) -> None:
        started = time.monotonic()
        fn()
        steps[name] = round(time.monotonic() - started, 2)

    step("llm", _llm)
    step("memory", _memory)
    if settings.WARM_VOICE:
        step("asr", _asr)
        step("tts", _tts)
        step("vad", _vad)
    connections.close_all()  # opened in this thread for the index lookup; requests open their own
    log.info("models warm in %.1f s: %s", sum(steps.values()), ", ".join(f"{k} {v} s" for k, v in steps.items()))
    return steps


def _llm() -> None:
    from workers.llm.engines import get_engine

    engine = get_engine()
    # One short generation: the first pass through the model pays one-off costs (allocation, kernels).
    messages = [{"role": "system", "content": "You are a warm-up."}, {"role": "user", "content": "Hi"}]
    for _ in engine.stream(messages, max_new_tokens=2):
        pass


def _memory() -> None:
    from apps.memory.selectors import memories_recall

    # Embeds a query and opens the index, as a turn's retrieval does (no user has id 0: nothing found).
    memories_recall(user_id=0, character_id=0, query="warm-up")


def _asr() -> None:
    from workers.asr.engine import get_asr_engine

    get_asr_engine()  # runs one decode itself


def _tts() -> None:
    from workers.tts.engine import get_tts_engines

    get_tts_engines()  # loads and runs the default voice itself


def _vad() -> None:
    import numpy as np

    from apps.realtime.vad import StreamingVad

    StreamingVad.from_settings().feed(np.zeros(1600, np.int16).tobytes())


def memory_index_connect() -> None:
    """Import chromadb and build the index client, as a worker's first turn otherwise did: 400-700 ms
    of the first reply after every worker start. The index is optional to a turn, so one that cannot
    be reached now is logged, not fatal: turns go on without memories and connect when it is back."""
    from apps.memory.index import chroma_client

    started = time.monotonic()
    try:
        chroma_client()
    except Exception as exc:  # noqa: BLE001 - chromadb raises its own, httpx's or a ValueError
        log.warning("memory index not reachable at start (%r); turns reply without memories until it is", exc)
        return
    log.info("memory index client ready in %.2f s", time.monotonic() - started)


def heap_freeze() -> int:
    """Move every object alive now (modules, models, settings: what a process builds as it starts)
    out of the garbage collector's sight, so its full collections scan only what requests and jobs
    create. Unfrozen, each full collection walked the whole start-up heap: 60-100 ms in Daphne and
    150-330 ms in an llm worker with torch and sentence-transformers loaded (bench/load.py saw them
    as its first-text tail), every few seconds under load. Returns how many objects were frozen."""
    import gc

    gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    log.info("start-up heap frozen: %d objects left out of garbage collection", frozen)
    return frozen
