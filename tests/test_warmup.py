"""The embedded mode warms its models before it listens, and `make run` announces the URL only then."""

import subprocess
import sys
import time

import httpx

from tests import stack
from tests.conftest import LOG_DIR

EMBEDDED = ("DATABASE_URL", "REDIS_URL", "SECRET_KEY", "TASKS_IN_PROCESS", "CHROMA_URL", "DEMO_API_TOKEN")


def embedded_env(var, **extra) -> dict:
    return {
        "DJANGO_SETTINGS_MODULE": "personatalk.settings",
        "PERSONATALK_VAR_DIR": str(var),
        "LLM_BACKEND": "scripted",  # the LLM's own load is measured by bench/first_reply.py
        **dict.fromkeys(EMBEDDED),
        **extra,
    }


def test_models_load_before_the_server_listens_and_the_url_waits_for_it(tmp_path):
    env = embedded_env(tmp_path, WARM_MODELS="true")
    stack.manage("migrate", "--noinput", env=env)
    port = stack.free_port()
    url = f"http://127.0.0.1:{port}"
    log = LOG_DIR / f"warm-daphne-{port}.log"
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    args = [str(stack.BIN / "daphne"), "-b", "127.0.0.1", "-p", str(port), "personatalk.asgi:application"]
    with open(log, "wb") as out:
        daphne = subprocess.Popen(args, cwd=stack.ROOT, env=stack.merged_env(env), stdout=out, stderr=subprocess.STDOUT)
    try:
        announced = subprocess.run(
            [sys.executable, "manage.py", "demo_info", "--url", url, "--wait", "--pid", str(daphne.pid)],
            cwd=stack.ROOT,
            env=stack.merged_env(env),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert announced.returncode == 0, announced.stderr
        assert f"on {url}" in announced.stdout
        text = log.read_text()
        warm = text.find("models warm in")
        assert warm >= 0, text
        for step in ("llm", "memory", "asr", "tts", "vad"):
            assert f"{step} " in text[warm:].splitlines()[0]
        listening = text.find("Listening on TCP address")
        assert 0 <= warm < listening, text  # loaded first, then the port opened
        # The loaded models are left out of garbage collection: a full collection scans only what
        # requests create (it walked the whole start-up heap, 60-100 ms in Daphne).
        assert warm < text.find("start-up heap frozen") < listening, text
        assert httpx.get(f"{url}/health").status_code == 200  # announced means it answers
    finally:
        daphne.terminate()
        daphne.wait(15)


def test_a_server_that_dies_is_not_announced(tmp_path):
    env = embedded_env(tmp_path)
    dead = subprocess.Popen(["true"])
    dead.wait()
    started = time.monotonic()
    out = subprocess.run(
        [sys.executable, "manage.py", "demo_info", "--wait", "--pid", str(dead.pid)]
        + ["--url", f"http://127.0.0.1:{stack.free_port()}"],
        cwd=stack.ROOT,
        env=stack.merged_env(env),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode != 0 and "exited before it was ready" in out.stderr
    assert "demo token" not in out.stdout
    assert time.monotonic() - started < 30


def test_the_stack_helper_starts_daphne_cold(tmp_path):
    """Tests start Daphne without the warm-up unless they ask (it would slow every start)."""
    env = embedded_env(tmp_path)
    stack.manage("migrate", "--noinput", env=env)
    daphne, url = stack.start_daphne(env=env, log_dir=LOG_DIR)
    try:
        assert "models warm in" not in daphne.log.read_text()
    finally:
        daphne.stop()


def test_the_start_up_heap_is_left_out_of_garbage_collection():
    import gc

    from personatalk.warmup import heap_freeze

    loaded = {"model": [[] for _ in range(100)]}  # containers: what the collector tracks
    try:
        frozen = heap_freeze()
        assert frozen >= 100 and 0 < gc.get_freeze_count() <= frozen  # (frozen objects freed since leave it)
        assert not any(o is loaded for o in gc.get_objects())  # a full collection no longer walks it
        later = {"request": []}
        assert any(o is later for o in gc.get_objects())  # what comes after is collected as before
    finally:
        gc.unfreeze()


def test_a_worker_connects_to_the_memory_index_at_start_and_starts_without_it(settings, caplog, chroma_server):
    """Its first turn had paid for chromadb's import and client (400-700 ms); an unreachable index
    must not stop the worker (turns reply without memories and connect once it is back)."""
    import logging

    from apps.memory import index
    from personatalk.warmup import memory_index_connect

    saved = index._client
    try:
        index._client = None
        settings.CHROMA_URL = "http://127.0.0.1:9"  # nothing listens
        with caplog.at_level(logging.INFO, logger="personatalk.warmup"):
            memory_index_connect()
        assert index._client is None and "memory index not reachable at start" in caplog.text

        settings.CHROMA_URL = chroma_server
        memory_index_connect()
        assert index._client is not None and index._client.heartbeat() > 0
    finally:
        index._client = saved
