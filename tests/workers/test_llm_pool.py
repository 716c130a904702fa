"""Which pool an `llm` worker runs: threads for a server engine (many turns at once), one prefork
process for an engine in the process (the local model), whatever the command line named.
The real threaded worker is driven in tests/realtime/test_llm_worker_threads.py."""

import sys
from types import SimpleNamespace

import pytest
from celery.concurrency.prefork import TaskPool as PreforkPool
from django.test import override_settings

from personatalk.celery import LLM_THREADS_SWITCH_INTERVAL_S, is_prefork, llm_threads_for_server_engines


def worker(*queues: str) -> SimpleNamespace:
    """What `worker_init` hands its handlers, as far as the pool choice reads and writes it: the
    command line's pool (the class it resolved `-P prefork` to) and `-c 1`."""
    app = SimpleNamespace(amqp=SimpleNamespace(queues=SimpleNamespace(consume_from={q: None for q in queues})))
    return SimpleNamespace(app=app, pool_cls=PreforkPool, concurrency=1)


@pytest.fixture
def switch_interval():
    """The process's GIL switch interval, put back after the test."""
    before = sys.getswitchinterval()
    yield
    sys.setswitchinterval(before)


@override_settings(LLM_BACKEND="openai", LLM_WORKER_CONCURRENCY=24, EMBED_THREADS=1)
def test_a_server_engine_runs_its_turns_in_threads(switch_interval):
    sender = worker("llm")
    llm_threads_for_server_engines(sender=sender)
    assert (sender.pool_cls, sender.concurrency) == ("threads", 24)
    assert not is_prefork(sender.pool_cls)
    # its consumer thread, which takes the jobs off the queue, gets the GIL soon among the streams
    assert sys.getswitchinterval() == pytest.approx(LLM_THREADS_SWITCH_INTERVAL_S)
    assert LLM_THREADS_SWITCH_INTERVAL_S < 0.005


@pytest.mark.parametrize(
    ("backend", "concurrency", "queues"),
    [
        ("transformers", 32, ("llm",)),  # holds the model: one turn per process
        ("scripted", 32, ("llm",)),  # stands in for the local engine in tests (hard limits included)
        ("openai", 1, ("llm",)),  # the operator asked for one
        ("openai", 32, ("llm", "tts")),  # Piper and the TTS time limits need their prefork process
    ],
)
def test_other_workers_keep_the_pool_their_command_line_names(backend, concurrency, queues, switch_interval):
    sys.setswitchinterval(0.005)
    sender = worker(*queues)
    with override_settings(LLM_BACKEND=backend, LLM_WORKER_CONCURRENCY=concurrency, EMBED_THREADS=1):
        llm_threads_for_server_engines(sender=sender)
    assert (sender.pool_cls, sender.concurrency) == (PreforkPool, 1)
    assert is_prefork(sender.pool_cls) and is_prefork("prefork")
    assert sys.getswitchinterval() == pytest.approx(0.005)  # one process, one job: Python's own


@override_settings(LLM_BACKEND="transformers", LLM_WORKER_CONCURRENCY=32)
def test_threads_asked_for_the_local_engine_run_one_turn_at_a_time():
    sender = worker("llm")
    sender.pool_cls, sender.concurrency = "threads", 8  # `-P threads -c 8`: eight turns on one model
    llm_threads_for_server_engines(sender=sender)
    assert (sender.pool_cls, sender.concurrency) == ("threads", 1)
