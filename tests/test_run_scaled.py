"""`make run-scaled` serves where it says: Daphne, started by honcho from the Procfile's web line,
listens on the port the Makefile prints (honcho sets PORT itself: 5000, then +100 per process)."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from honcho.environ import expand_processes, parse_procfile

from tests.stack import BIN, ROOT, free_port, merged_env

HONCHO_BASE_PORT = 5000  # honcho's default when PORT is not in its environment


def make(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "-s", *args], cwd=ROOT, env=merged_env(env or {}), capture_output=True, text=True)


def printed_url(*make_vars: str) -> str:
    out = make("-n", "run-scaled", *make_vars).stdout
    return re.search(r"demo_info --url (\S+)", out).group(1)


def recipe_env(*make_vars: str, env: dict | None = None) -> dict:
    """The environment `make run-scaled` gives its commands (honcho's included): a prerequisite
    inherits the target's exports, and this one prints them and stops make before anything runs."""
    out = make(
        "--eval=run-scaled: _print_env",
        "--eval=_print_env: ; @env -0; exit 1",
        "run-scaled",
        *make_vars,
        env=env,
    )
    assert "_print_env" in out.stderr, out.stderr  # it stopped where meant to, not earlier
    return dict(item.split("=", 1) for item in out.stdout.split("\0") if "=" in item)


def web_argv(env: dict) -> list[str]:
    """The web line's arguments as honcho runs them: its environment for the first process, then sh."""
    processes = parse_procfile((ROOT / "Procfile").read_text()).processes
    port = int(env.get("PORT", HONCHO_BASE_PORT))  # honcho start: -p, else PORT, else 5000
    (web, *_) = expand_processes(processes, env={}, port=port)
    assert web.name == "web.1"
    run_env = {**env, **web.env}
    assert run_env["PORT"] == str(HONCHO_BASE_PORT)
    shown = subprocess.run(["sh", "-c", f"printf '%s\\n' {web.cmd}"], env=run_env, capture_output=True, text=True)
    return shown.stdout.split()


def test_the_web_line_binds_the_printed_address_by_default():
    env = recipe_env(env={"PORT": None, "HOST": None})
    assert "PORT" not in env  # make's own default: not exported, so honcho numbers from 5000
    url = printed_url()
    argv = web_argv(env)
    assert Path(argv[0]).name == "daphne"
    assert f"http://{argv[argv.index('-b') + 1]}:{argv[argv.index('-p') + 1]}" == url == "http://127.0.0.1:8000"


@pytest.mark.django_db
def test_daphne_started_by_honcho_answers_on_the_printed_port(live_env):
    port = free_port()
    env = recipe_env(f"PORT={port}", env=live_env)
    url = printed_url(f"PORT={port}")
    assert url == f"http://127.0.0.1:{port}"
    env.pop("PORT", None)  # as a plain `make run-scaled` runs it: honcho's PORT is its own 5000
    honcho = subprocess.Popen(
        [str(BIN / "honcho"), "start", "-f", "Procfile", "web"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline, answered = time.monotonic() + 60, None
        while time.monotonic() < deadline and honcho.poll() is None:
            try:
                answered = httpx.get(f"{url}/health", timeout=1).status_code
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        assert answered == 200, honcho.stdout.read1().decode(errors="replace") if honcho.poll() is not None else ""
    finally:
        os.killpg(honcho.pid, signal.SIGTERM)
        honcho.wait(15)


def test_honcho_is_the_one_the_makefile_runs():
    assert (Path(sys.executable).parent / "honcho").exists()
    assert ".venv/bin/honcho start -f Procfile" in make("-n", "run-scaled").stdout
