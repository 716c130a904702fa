"""The observability profile's files in docker/: the Grafana dashboard asks only for metrics the code
exports (and shows every PersonaTalk metric), and Prometheus scrapes the services that serve them."""

import json
import re
from pathlib import Path

import pytest
import yaml
from django.test import override_settings
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parent.parent
DOCKER = ROOT / "docker"
DASHBOARD = DOCKER / "grafana" / "dashboards" / "personatalk.json"

# Series a family of each type exports (the text exposition): a counter `x` is `x_total`, a histogram
# `x_bucket`, `x_sum` and `x_count`.
SERIES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "gauge": ("",),
    "summary": ("", "_sum", "_count", "_created"),
    "info": ("_info",),
    "untyped": ("",),
}
_NOT_METRICS = {"bool", "offset", "and", "or", "unless", "group_left", "group_right", "inf", "nan"}


def promql_metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (not functions, label names, keywords or numbers)."""
    expr = re.sub(r'"(?:\\.|[^"\\])*"', '""', expr)  # strings
    expr = re.sub(r"\{[^}]*\}", " ", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", " ", expr)  # range and subquery selectors ([$__rate_interval])
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)  # label lists
    names = set()
    for match in re.finditer(r"(?<![\w.])[a-zA-Z_:][a-zA-Z0-9_:]*", expr):
        if expr[match.end() :].lstrip().startswith("(") or match.group().lower() in _NOT_METRICS:
            continue  # a function or an aggregation
        names.add(match.group())
    return names


def test_promql_metric_names():
    expr = 'histogram_quantile(0.95, sum by (le, engine) (rate(a_seconds_bucket{queue="llm", x=~"b_c"}[$__rate_interval])))'
    assert promql_metric_names(expr) == {"a_seconds_bucket"}
    assert promql_metric_names("max by (queue) (q_depth) / on(queue) group_left sum(x_total offset 5m) > 1e3") == {
        "q_depth",
        "x_total",
    }
    assert promql_metric_names("sum without (instance) (rate(y_total[5m])) and bool z") == {"y_total", "z"}


def panels(dashboard: dict) -> list[dict]:
    found = []
    for panel in dashboard["panels"]:
        found.append(panel)
        found += panel.get("panels", [])  # a collapsed row holds its panels
    return found


def exported_families(client) -> list:
    """The families the web process's /metrics declares: everything in apps.core.metrics (the workers'
    stages included), django-prometheus's request and database metrics, the process's own."""
    with override_settings(METRICS_ENABLED=True, METRICS_TOKEN=""):
        response = client.get("/metrics")
    assert response.status_code == 200
    return list(text_string_to_metric_families(response.content.decode()))


@pytest.mark.django_db
def test_every_dashboard_query_names_metrics_the_code_exports(client):
    families = exported_families(client)
    exported = {family.name + suffix for family in families for suffix in SERIES[family.type]}
    dashboard = json.loads(DASHBOARD.read_text())
    queried = set()
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            names = promql_metric_names(target["expr"])
            assert names, f"panel {panel['title']!r}: no metric in {target['expr']!r}"
            assert names <= exported, f"panel {panel['title']!r} asks for {sorted(names - exported)}, not exported"
            queried |= names
    ours = {family.name for family in families if family.name.startswith("personatalk_")}
    assert len(ours) >= 10  # sockets, quotas, error frames, queue depths and the six turn stages
    shown = {name for name in ours if any(q.startswith(name) for q in queried)}
    assert shown == ours, f"no panel shows {sorted(ours - shown)}"


def test_the_dashboard_reads_the_provisioned_data_source():
    provisioned = yaml.safe_load((DOCKER / "grafana/provisioning/datasources/prometheus.yml").read_text())
    uid = provisioned["datasources"][0]["uid"]
    dashboard = json.loads(DASHBOARD.read_text())
    for panel in panels(dashboard):
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == uid
            assert all(t["datasource"]["uid"] == uid for t in panel["targets"])
    provider = yaml.safe_load((DOCKER / "grafana/provisioning/dashboards/personatalk.yml").read_text())
    compose = yaml.safe_load((DOCKER / "compose.yml").read_text())
    grafana_mounts = compose["services"]["grafana"]["volumes"]
    assert f"./grafana/dashboards:{provider['providers'][0]['options']['path']}:ro" in grafana_mounts


def test_prometheus_scrapes_the_web_process_with_the_token_and_every_worker_service():
    config = yaml.safe_load((DOCKER / "prometheus/prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    compose = yaml.safe_load((DOCKER / "compose.yml").read_text())
    services = compose["services"]

    web = jobs["web"]
    assert web["metrics_path"] == "/metrics" and web["authorization"]["type"] == "Bearer"
    assert web["static_configs"][0]["targets"] == ["web:8000"]
    assert "web" in compose["x-app-env"]["ALLOWED_HOSTS"]  # Prometheus's Host header
    prometheus = services["prometheus"]
    assert web["authorization"]["credentials_file"] in " ".join(prometheus["command"])

    workers = [  # every worker, the `gpu` profile's too (a name that does not resolve yields no targets)
        name
        for name, service in services.items()
        if service.get("image", "").startswith("personatalk-worker") and name != "beat"
    ]
    assert {"worker-llm", "worker-llm-gpu", "worker-voice-gpu"} <= set(workers)
    sd = jobs["workers"]["dns_sd_configs"][0]
    assert set(workers) <= set(sd["names"])
    assert str(sd["port"]) == str(compose["x-app-env"]["METRICS_PORT"])
    for name in ("prometheus", "grafana", "flower"):
        assert services[name]["profiles"] == ["observability"]
        assert all(port.startswith("127.0.0.1:") for port in services[name]["ports"])  # never published beyond the host
