"""Start and stop the scaled stack's processes (Daphne, Celery workers) for tests and benchmarks."""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen
    log: Path
    node: str = ""  # a Celery worker's node name, for remote control
    metrics_port: int = 0  # where a Celery worker's (first) pool process serves its metrics

    def tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self, timeout: float = 15) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


def merged_env(env: dict) -> dict:
    """This process's environment with `env` applied; a None value removes the variable."""
    merged = {**os.environ, **env}
    return {k: v for k, v in merged.items() if v is not None}


def _spawn(name: str, args: list[str], env: dict, log_dir: Path) -> Proc:
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"{name}.log"
    fh = open(log, "wb")
    popen = subprocess.Popen(args, cwd=ROOT, env=merged_env(env), stdout=fh, stderr=subprocess.STDOUT)
    return Proc(name, popen, log)


def _wait(proc: Proc, ready, timeout: float) -> Proc:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            raise RuntimeError(f"{proc.name} exited with {proc.popen.returncode}:\n{proc.tail()}")
        if ready():
            return proc
        time.sleep(0.1)
    proc.stop()
    raise RuntimeError(f"{proc.name} not ready after {timeout:.0f} s:\n{proc.tail()}")


def start_worker(
    *,
    queues: str,
    env: dict,
    log_dir: Path,
    name: str | None = None,
    pool: str = "prefork",
    timeout: float = 120,
    metrics_port: int | None = None,
) -> Proc:
    """A Celery worker serving `queues` as the Procfile runs one: one pool process (one model copy),
    prefork so time limits fire (an `llm` worker with a server engine switches itself to threads:
    personatalk/celery.py). Ready once the pool process has loaded its models (other pools load none
    at start). Its metrics are served on `metrics_port` (a free one by default)."""
    name = name or f"worker-{queues.replace(',', '-')}"
    metrics_port = metrics_port or free_port()
    env = {"METRICS_PORT": str(metrics_port), **env}
    args = [
        str(BIN / "celery"),
        "-A",
        "personatalk",
        "worker",
        "-Q",
        queues,
        "-P",
        pool,
        "-c",
        "1",
        "-n",
        f"{name}@%h",
        "--without-gossip",
        "--without-mingle",
        "-l",
        "INFO",
    ]
    proc = _spawn(name, args, env, log_dir)
    proc.node, proc.metrics_port = f"{name}@{socket.gethostname()}", metrics_port
    loaded = (lambda: pool_processes_ready(proc) >= 1) if pool == "prefork" else (lambda: True)
    return _wait(proc, lambda: loaded() and " ready." in proc.tail(200), timeout)


@contextlib.contextmanager
def sole_worker(*, queue: str, env: dict, log_dir: Path, name: str, **kwargs) -> Iterator[Proc]:
    """A worker that is the only consumer of `queue` while the block runs: every other worker stops
    consuming it first, and consumes it again (checked) after, so a job sent meanwhile lands here and
    the next tests find the queue served as before."""
    from personatalk.celery import app

    paused = _stop_consuming(app, queue)
    proc = start_worker(queues=queue, env=env, log_dir=log_dir, name=name, **kwargs)
    try:
        yield proc
    finally:
        proc.stop()
        if paused:
            _consume_again(app, queue, paused)


def _stop_consuming(app, queue: str, timeout_s: float = 15.0) -> list[str]:
    """Every running worker stops consuming `queue`, checked (a worker slow to answer on a loaded
    machine would otherwise go on taking its jobs); the nodes paused, whether or not they answered
    the cancel in time. On failure those are restored before the error is raised."""
    paused, deadline = [], time.monotonic() + timeout_s
    try:
        while True:
            nodes = {node for reply in app.control.ping(timeout=2) for node in reply}
            queues = (app.control.inspect(destination=list(nodes), timeout=2).active_queues() or {}) if nodes else {}
            consuming = [node for node, consumed in queues.items() if any(q["name"] == queue for q in consumed)]
            unheard = nodes - queues.keys()  # alive, but its queues came too late: asked again
            if not consuming and not unheard:
                return paused
            if time.monotonic() > deadline:
                raise AssertionError(f"{consuming} still consume queue {queue}; {sorted(unheard)} do not say")
            if consuming:
                app.control.cancel_consumer(queue, destination=consuming, reply=True, timeout=2)
                paused += [node for node in consuming if node not in paused]  # answered in time or not
    except BaseException:
        if paused:
            _consume_again(app, queue, paused)
        raise


def _consume_again(app, queue: str, nodes: list[str], timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        app.control.add_consumer(queue, destination=nodes, reply=True, timeout=5)
        queues = app.control.inspect(destination=nodes, timeout=2).active_queues() or {}
        if all(any(q["name"] == queue for q in queues.get(node, [])) for node in nodes):
            return
    raise AssertionError(f"{nodes} do not consume queue {queue} again")


def pool_processes_ready(proc: Proc) -> int:
    """How many pool processes of a worker have loaded their models so far (a killed one is replaced)."""
    try:
        return proc.log.read_text(errors="replace").count("pool process ready")
    except OSError:
        return 0


def chroma_up(url: str) -> bool:
    try:
        return httpx.get(f"{url}/api/v2/heartbeat", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def start_chroma(*, url: str, path: Path, log_dir: Path, timeout: float = 60) -> Proc | None:
    """A Chroma server as the README says to run one (`chroma run`); None if one already answers at `url`."""
    if chroma_up(url):
        return None
    port = url.rsplit(":", 1)[1].strip("/")
    args = [str(BIN / "chroma"), "run", "--path", str(path), "--host", "127.0.0.1", "--port", port]
    proc = _spawn(f"chroma-{port}", args, {"ANONYMIZED_TELEMETRY": "False"}, log_dir)
    return _wait(proc, lambda: chroma_up(url), timeout)


def start_daphne(*, env: dict, log_dir: Path, port: int | None = None, timeout: float = 60) -> tuple[Proc, str]:
    """Daphne serving the project; returns the process and its base URL.

    Models are not warmed before it listens (WARM_MODELS) unless `env` asks: most tests never run
    the models in the web process, and the warm-up would slow every start.
    """
    env = {"WARM_MODELS": "false", **env}
    port = port or free_port()
    args = [str(BIN / "daphne"), "-b", "127.0.0.1", "-p", str(port), "personatalk.asgi:application"]
    proc = _spawn(f"daphne-{port}", args, env, log_dir)
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return httpx.get(f"{url}/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    return _wait(proc, up, timeout), url


def manage(*args: str, env: dict) -> str:
    out = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=merged_env(env), capture_output=True, text=True, timeout=600
    )
    if out.returncode:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{out.stdout}\n{out.stderr}")
    return out.stdout
