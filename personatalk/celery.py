"""The Celery app; configured from Django settings (CELERY_* names), tasks found in workers/."""

import logging
import os
import sys
import time

from celery import Celery
from celery.signals import task_postrun, task_prerun, worker_init, worker_process_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "personatalk.settings")

app = Celery("personatalk")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["workers.llm", "workers.asr", "workers.tts", "workers.embed"])

log = logging.getLogger(__name__)

# Celery's Django fixup closes every database connection before and after each job unless this is
# set (then once in 2 x this many): a new PostgreSQL connection, ~5 ms of each reply's first text.
# Jobs keep theirs instead, and `database_connection_checked` below retires one as Django does
# between requests (past CONN_MAX_AGE, or failing its health check).
app.conf["CELERY_DB_REUSE_MAX"] = 10**9


def is_prefork(pool_cls) -> bool:
    """Whether a worker's pool (a name, or the class the command line resolved it to) forks processes."""
    if isinstance(pool_cls, str):
        return pool_cls in ("prefork", "processes")
    return getattr(pool_cls, "__module__", "") == "celery.concurrency.prefork"


LLM_THREADS_SWITCH_INTERVAL_S = 0.0005


@worker_init.connect
def llm_threads_for_server_engines(sender, **kwargs):
    """A worker serving only queue `llm` with a server engine (LLM_BACKEND=openai) streams
    LLM_WORKER_CONCURRENCY turns at once, in Celery's threads pool, whatever pool and concurrency its
    command line named: the Procfile and the image name one prefork process, right for the local
    engine, which holds the model. Its jobs are HTTP streams that wait on the server, so threads suffice.

    Under threads no time limit is enforced by Celery (its guide: time limits need prefork or gevent):
    a reply's soft limit is the deadline `text_turn_run` checks between tokens, the hard one the HTTP
    client's timeouts. Set here, before the worker resolves its pool class (Celery does that after
    `worker_init`, so that handlers may change it); the prefetch follows (concurrency x multiplier).
    """
    from django.conf import settings

    from workers.llm.engines import llm_worker_concurrency

    if set(sender.app.amqp.queues.consume_from) != {"llm"}:
        return  # other queues' engines (Whisper, Piper) keep their prefork process and its limits
    threads = llm_worker_concurrency(backend=settings.LLM_BACKEND, concurrency=settings.LLM_WORKER_CONCURRENCY)
    if threads > 1:
        log.info("llm worker: %s engine, %d turns at once (threads pool)", settings.LLM_BACKEND, threads)
        sender.pool_cls, sender.concurrency = "threads", threads
        # The consumer's thread takes each job off the queue, and needs the GIL a few times a job while
        # dozens of streams want it too: at 500 sockets (2-core box, 2026-12-05) a job waited 40 / 262 /
        # 482 ms p50 / p90 / p99 between Redis and the worker (Daphne's publish: 6 / 42 ms p50 / p99).
        # A thread that waits for the GIL asks the holder to let go after this interval (5 ms by
        # default): 0.5 ms took the queue's p50 from 215 to 44-51 ms in that run, for no more CPU.
        sys.setswitchinterval(LLM_THREADS_SWITCH_INTERVAL_S)
        if not settings.EMBED_THREADS:
            import torch

            # Its only torch work is each turn's retrieval query (one short line, one at a time): on the
            # busy 2-core box one torch thread embedded it in 12 ms, two in 74 (they wait for each other).
            torch.set_num_threads(1)
    elif not is_prefork(sender.pool_cls) and sender.concurrency > 1:  # `-P threads -c 8` with the local model
        log.warning(
            "llm worker: the %s engine holds its model in the process: one turn at a time", settings.LLM_BACKEND
        )
        sender.concurrency = 1


@worker_init.connect
def lower_priority(**kwargs):
    """WORKER_NICE: run this worker below the others (e.g. partial transcripts, whose results only
    show progress, must not slow the final pass on the same cores). Set before any model starts
    its threads, which inherit it (and before the pool forks, so its processes do too)."""
    from django.conf import settings

    if settings.WORKER_NICE:
        os.nice(settings.WORKER_NICE)


@worker_init.connect
def import_engine_libraries(sender, **kwargs):
    """Import (not load) the model libraries before the pool forks, so a pool process replaced
    after a hard time limit starts in seconds: imports start no threads, loading models does."""
    from django.conf import settings

    queues = set(sender.app.amqp.queues.consume_from)
    if "llm" in queues and settings.LLM_BACKEND == "transformers":
        import transformers  # noqa: F401
    if queues & {"asr", "asr_partial"}:
        import faster_whisper  # noqa: F401
    if queues & {"llm", "embed", "batch"}:
        import sentence_transformers  # noqa: F401
    if queues & {"tts", "batch"}:
        import piper  # noqa: F401


@worker_process_init.connect
def load_models(**kwargs):
    """Load each engine the worker's queues need in the process that runs the jobs, before it takes one.

    With the prefork pool that is the pool process, after the fork: torch and CTranslate2 start
    thread pools that a forked child cannot use (its first job hung when the parent had loaded the
    embedder or Whisper, or run the LLM), so nothing is loaded in the parent, which only
    supervises: it enforces the time limits and replaces a killed pool process.
    A missing model is then a start-up error naming the setting, not a failed first turn.
    """
    from billiard.process import current_process

    if current_process().name != "MainProcess":
        # A pool process leads its own process group: the hard time limit then kills the programs it
        # started too (ffmpeg, espeak-ng), not only the process (billiard kills the group of a leader).
        os.setpgid(0, 0)
    started = time.monotonic()
    queues = set(app.amqp.queues.consume_from)
    from django.conf import settings

    # The batch queue's summaries use the LLM too: built lazily, unless compiling it (LLM_COMPILE) would
    # otherwise take the first summary's time limit.
    if "llm" in queues or ("batch" in queues and settings.LLM_COMPILE):
        from workers.llm.engines import get_engine

        get_engine()
    if queues & {"asr", "asr_partial"}:
        from workers.asr.engine import get_asr_engine

        get_asr_engine()
    if queues & {"llm", "embed", "batch"}:  # retrieval in every turn; the memory jobs
        from personatalk.warmup import memory_index_connect
        from workers.embed.engine import get_embedder

        get_embedder()
        memory_index_connect()
    if queues & {"tts", "batch"}:  # batch: greetings rendered ahead of time
        from workers.tts.engine import get_tts_engines

        get_tts_engines()
    from personatalk.warmup import heap_freeze

    heap_freeze()
    # tests/stack.py waits for this line: the worker can take a job once its pool process logged it.
    log.info(
        "pool process ready: pid %s loaded %s in %.1f s",
        os.getpid(),
        ",".join(sorted(queues)),
        time.monotonic() - started,
    )


@worker_init.connect
def load_models_without_pool_processes(sender, **kwargs):
    """A worker whose pool forks no process (threads, solo) runs its jobs in this process: it loads the
    models here, before it takes a job, as a prefork pool process does after its fork."""
    if not is_prefork(sender.pool_cls):
        load_models()


# --- metrics and log context (README "Metrics and logs") ------------------------------------------


@worker_init.connect
def serve_metrics_from_worker(sender, **kwargs):
    """METRICS_PORT: a pool that runs jobs in this process (threads, solo) serves its metrics from here;
    the prefork pool's processes each serve their own (below), this parent only supervises them."""
    from django.conf import settings

    # After llm_threads_for_server_engines (connected first), which may have switched the pool.
    if settings.METRICS_PORT and not is_prefork(sender.pool_cls):
        from apps.core.metrics import metrics_serve

        metrics_serve(port=settings.METRICS_PORT, address=settings.METRICS_ADDRESS)


@worker_process_init.connect
def serve_metrics_from_pool_process(**kwargs):
    """A prefork pool process serves on METRICS_PORT plus its index (a replacement takes the index, and
    the port, of the process it replaces): one port per process that does the work, no shared files."""
    from billiard.process import current_process
    from django.conf import settings

    process = current_process()
    if settings.METRICS_PORT and process.name != "MainProcess":
        from apps.core.metrics import metrics_serve

        index = getattr(process, "index", 0) or 0
        metrics_serve(port=settings.METRICS_PORT + index, address=settings.METRICS_ADDRESS)


@task_prerun.connect
def database_connection_checked(**_):
    """Before each job, what Django does before each request: drop a connection that is too old or broken
    (its health check skipped where the connection answered a moment ago: apps/core/dbasync.py)."""
    from apps.core.dbasync import connections_checked

    connections_checked()


@task_prerun.connect
def job_context_enter(task=None, kwargs=None, **_):
    """Log lines and stage metrics of a job belong to its turn, its session and its queue."""
    from apps.core.logcontext import log_context_set
    from apps.core.metrics import job_queue_set

    kwargs = kwargs or {}
    log_context_set(turn_id=kwargs.get("turn_id"), session_id=kwargs.get("session_id"))
    delivery = getattr(task.request, "delivery_info", None) or {}
    queue = delivery.get("routing_key")
    if not queue:  # run in-process (the embedded mode): the queue it would have been routed to
        queue = task.app.amqp.router.route({}, task.name)["queue"].name
    job_queue_set(queue)


@task_postrun.connect
def job_context_leave(**_):
    from apps.core.logcontext import log_context_set
    from apps.core.metrics import job_queue_set

    log_context_set()
    job_queue_set(None)
