"""A Celery worker serves its own metrics on METRICS_PORT: under the threads pool from the process that
runs the jobs (the prefork pool's processes serve theirs, see tests/realtime/test_socket_metrics.py),
with a job's stage labelled by the queue it came from."""

import time

import httpx
import pytest
from celery import current_app

from tests import memories, stack
from tests.conftest import LOG_DIR
from tests.scrape import scrape, value

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def threads_worker(live_env):
    proc = stack.start_worker(
        queues="metrics_probe", pool="threads", env=live_env, log_dir=LOG_DIR, name="worker-threads-probe"
    )
    yield proc
    proc.stop()


def test_a_threads_pool_worker_serves_the_metrics_of_the_jobs_it_runs(threads_worker, user, character):
    url = f"http://127.0.0.1:{threads_worker.metrics_port}/metrics"
    text = httpx.get(url, timeout=5).text
    for family in ("personatalk_llm_first_token_seconds histogram", "personatalk_asr_seconds histogram"):
        assert f"# TYPE {family}" in text  # every stage is declared, observed or not
    labels = {"engine": "all-MiniLM-L6-v2", "queue": "metrics_probe"}
    # Something to search (a user with no memories of the character skips the search, and its figure).
    memories.remember(user, character, "The user said: I love looking at the stars.")
    before = value(scrape(url), "personatalk_retrieval_seconds_count", **labels)

    current_app.send_task(
        "workers.embed.tasks.memory_search",
        kwargs={"user_id": user.pk, "character_id": character.pk, "query": "stars", "k": 3, "reply_channel": "probe"},
        queue="metrics_probe",
    )
    deadline = time.monotonic() + 90  # the job loads the embedding model first
    while value(scrape(url), "personatalk_retrieval_seconds_count", **labels) == before:
        assert time.monotonic() < deadline, threads_worker.tail()
        time.sleep(0.25)
    assert value(scrape(url), "personatalk_retrieval_seconds_count", **labels) == before + 1
