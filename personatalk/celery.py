"""The Celery app; configured from Django settings (CELERY_* names), tasks found in workers/."""

import os

from celery import Celery
from celery.signals import worker_init, worker_ready

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "personatalk.settings")

app = Celery("personatalk")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["workers.llm", "workers.asr", "workers.tts", "workers.embed"])


@worker_init.connect
def lower_priority(**kwargs):
    """WORKER_NICE: run this worker below the others (e.g. partial transcripts, whose results only
    show progress, must not slow the final pass on the same cores). Set before any model starts
    its threads, which inherit it."""
    from django.conf import settings

    if settings.WORKER_NICE:
        os.nice(settings.WORKER_NICE)


@worker_ready.connect
def load_models(sender, **kwargs):
    """Load each engine the worker's queues need before it reports ready (once per process).

    A missing model is then a start-up error naming the setting, not a failed first turn.
    """
    queues = set(sender.app.amqp.queues.consume_from)
    if "llm" in queues:
        from workers.llm.engines import get_engine

        get_engine()
    if queues & {"asr", "asr_partial"}:
        from workers.asr.engine import get_asr_engine

        get_asr_engine()
    if queues & {"llm", "embed", "batch"}:  # retrieval in every turn; the memory jobs
        from workers.embed.engine import get_embedder

        get_embedder()
    if "tts" in queues:
        from workers.tts.engine import get_tts_engines

        get_tts_engines()
