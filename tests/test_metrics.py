"""GET /metrics on the web process: off unless enabled, behind a Bearer token when one is set, never on by
default in the scaled mode; what it exports (requests by view, queue depths read from the broker)."""

import subprocess
import sys

import httpx
import pytest
import redis
from django.conf import settings as django_settings
from django.test import override_settings
from prometheus_client import REGISTRY

from tests import stack
from tests.scrape import scrape, series, value

TOKEN = "metrics-test-token"


def get_metrics(client, token: str | None = None):
    return client.get("/metrics", **({"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}))


@override_settings(METRICS_ENABLED=False, METRICS_TOKEN=TOKEN)
def test_metrics_are_not_found_when_disabled(client):
    assert get_metrics(client).status_code == 404
    assert get_metrics(client, TOKEN).status_code == 404


@override_settings(METRICS_ENABLED=True, METRICS_TOKEN=TOKEN)
def test_metrics_need_the_bearer_token_when_one_is_set(client):
    refused = [
        get_metrics(client),
        get_metrics(client, "not-the-token"),
        get_metrics(client, TOKEN + "x"),
        client.get("/metrics", HTTP_AUTHORIZATION=f"Basic {TOKEN}"),
    ]
    for response in refused:
        assert response.status_code == 401
        assert response["WWW-Authenticate"].startswith("Bearer")
        assert b"personatalk_" not in response.content
    answered = get_metrics(client, TOKEN)
    assert answered.status_code == 200
    assert answered["Content-Type"].startswith("text/plain; version=0.0.4")
    exported = series(answered.content.decode())
    assert ("personatalk_sockets_open", frozenset()) in exported
    assert any(name == "process_resident_memory_bytes" for name, _ in exported)


@override_settings(METRICS_ENABLED=True, METRICS_TOKEN="")
def test_without_a_token_an_enabled_endpoint_answers_anyone_and_speaks_openmetrics(client):
    response = client.get("/metrics", HTTP_ACCEPT="application/openmetrics-text; version=1.0.0")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/openmetrics-text")
    assert response.content.rstrip().endswith(b"# EOF")


@override_settings(METRICS_ENABLED=True, METRICS_TOKEN="")
def test_requests_are_counted_by_view_method_and_status(client):
    labels = {"view": "health", "method": "GET", "status": "200"}
    before = value(
        series(get_metrics(client).content.decode()),
        "django_http_responses_total_by_status_view_method_total",
        **labels,
    )
    for _ in range(3):
        assert client.get("/health").status_code == 200
    after = series(get_metrics(client).content.decode())
    assert value(after, "django_http_responses_total_by_status_view_method_total", **labels) == before + 3
    assert value(after, "django_http_requests_latency_seconds_by_view_method_count", view="health", method="GET") >= 3


@pytest.mark.asyncio
async def test_requests_served_on_the_event_loop_are_counted_too(async_client):
    """Under ASGI (Daphne) the request middleware runs as a coroutine; it counts the same."""
    labels = {"view": "health", "method": "GET", "status": "200"}
    name = "django_http_responses_total_by_status_view_method_total"
    before = REGISTRY.get_sample_value(name, labels) or 0.0
    view_before = (
        REGISTRY.get_sample_value(
            "django_http_requests_total_by_view_transport_method_total",
            {"view": "health", "transport": "http", "method": "GET"},
        )
        or 0.0
    )
    response = await async_client.get("/health")
    assert response.status_code == 200
    assert REGISTRY.get_sample_value(name, labels) == before + 1
    assert (
        REGISTRY.get_sample_value(
            "django_http_requests_total_by_view_transport_method_total",
            {"view": "health", "transport": "http", "method": "GET"},
        )
        == view_before + 1
    )


@override_settings(
    METRICS_ENABLED=True,
    METRICS_TOKEN="",
    CELERY_TASK_ROUTES={**django_settings.CELERY_TASK_ROUTES, "tests.probe": {"queue": "metrics_probe"}},
)
def test_queue_depths_are_read_from_the_broker(client):
    broker = redis.Redis.from_url(django_settings.CELERY_BROKER_URL)
    broker.delete("metrics_probe")
    try:
        broker.lpush("metrics_probe", "a", "b", "c")
        broker.lpush("metrics_probe\x06\x169", "d")  # a message of priority 9: kombu's key of its own
        exported = series(get_metrics(client).content.decode())
        assert value(exported, "personatalk_queue_depth", queue="metrics_probe") == 4
        broker.delete("metrics_probe", "metrics_probe\x06\x169")
        exported = series(get_metrics(client).content.decode())
        assert value(exported, "personatalk_queue_depth", queue="metrics_probe") == 0
        assert ("personatalk_queue_depth", frozenset({("queue", "llm")})) in exported  # every routed queue
    finally:
        broker.delete("metrics_probe", "metrics_probe\x06\x169")


@pytest.mark.parametrize(
    "env, enabled",
    [
        ({"REDIS_URL": "redis://127.0.0.1:6379/12"}, False),  # scaled: never public by default
        ({"REDIS_URL": "redis://127.0.0.1:6379/12", "METRICS_TOKEN": "t"}, True),  # a token turns it on
        ({"REDIS_URL": "redis://127.0.0.1:6379/12", "METRICS_ENABLED": "true"}, True),  # said outright
        ({"REDIS_URL": None}, True),  # embedded: one machine, 127.0.0.1
    ],
)
def test_metrics_are_off_by_default_in_the_scaled_mode_unless_a_token_is_set(env, enabled, tmp_path):
    env = {
        "SECRET_KEY": "k",
        "METRICS_ENABLED": None,
        "METRICS_TOKEN": None,
        "PERSONATALK_VAR_DIR": str(tmp_path),
        **env,
    }
    code = "import personatalk.settings as s; print(s.METRICS_ENABLED, 'PrometheusAfterMiddleware' in s.MIDDLEWARE[-1])"
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=stack.ROOT,
        env=stack.merged_env(env),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [str(enabled), str(enabled)]


@pytest.fixture
def daphne(live_env):
    from tests.conftest import LOG_DIR

    proc, url = stack.start_daphne(env={**live_env, "METRICS_TOKEN": TOKEN}, log_dir=LOG_DIR)
    yield url
    proc.stop()


def test_daphne_serves_metrics_to_the_token_only(daphne):
    """The deployed shape: Daphne (ASGI) with a token; its own health check (tests/stack.py) counts too."""
    assert httpx.get(f"{daphne}/metrics", timeout=5).status_code == 401
    for _ in range(2):
        assert httpx.get(f"{daphne}/health", timeout=5).status_code == 200
    exported = scrape(f"{daphne}/metrics", token=TOKEN)
    assert (
        value(
            exported,
            "django_http_responses_total_by_status_view_method_total",
            view="health",
            method="GET",
            status="200",
        )
        == 3
    )
    assert value(exported, "personatalk_sockets_open") == 0
    assert value(exported, "personatalk_queue_depth", queue="llm") >= 0
    assert ("personatalk_queue_depth", frozenset({("queue", "llm")})) in exported
