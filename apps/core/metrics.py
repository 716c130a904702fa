"""PersonaTalk's Prometheus metrics, defined once (prometheus-client): what the web process and the
workers count and time. django-prometheus adds the web process's requests and queries.

Every process keeps its own registry and is scraped on its own: the web process at /metrics
(apps/api/metrics.py), each worker process on METRICS_PORT (personatalk/celery.py). A stage of a turn
is observed where its timing is produced, in the process that produced it; each is labelled by
`engine` (the model or backend that did the work) and `queue` (the Celery queue of the job, or
`edge` for what the web process measures itself). Times are in seconds, as Prometheus has it.
"""

import logging
import os
from contextvars import ContextVar

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, disable_created_metrics, start_http_server
from prometheus_client.core import GaugeMetricFamily

log = logging.getLogger(__name__)

# No `_created` series beside each counter and histogram: a timestamp per series, which no query here reads.
disable_created_metrics()

EDGE = "edge"  # the `queue` of stages the web process measures (VAD, voice-to-voice)

# --- the socket (web process) -------------------------------------------------------------------

SOCKETS_OPEN = Gauge("personatalk_sockets_open", "Conversation sockets open on this web process.")
SOCKET_CONNECTS = Counter("personatalk_socket_connects", "Conversation sockets opened.")
SOCKET_CLOSES = Counter("personatalk_socket_closes", "Conversation sockets closed, by WebSocket close code.", ["code"])
SOCKET_ERROR_FRAMES = Counter(
    "personatalk_socket_error_frames", "`error` frames sent to sockets, by error code.", ["code"]
)
QUOTA_REFUSALS = Counter(
    "personatalk_quota_refusals",
    "Requests refused by a quota, by kind (turn, memory_search, speech; open sockets per user or "
    "address; HTTP turns in flight).",
    ["kind"],
)

# --- the stages of a turn -------------------------------------------------------------------------
# Buckets around each stage's measured range on these machines (DESIGN.md) and on a GPU, with room
# for a loaded system: a p95 far past the last finite bucket reads as that bucket.


def _stage(name: str, documentation: str, buckets: tuple[float, ...]) -> Histogram:
    return Histogram(name, documentation, ["engine", "queue"], buckets=buckets)


# The wait from the end of speech to the VAD declaring it (VAD_SILENCE_MS, 450 ms, plus a window).
VAD_END = _stage(
    "personatalk_vad_end_seconds",
    "Audio heard after the end of speech before the VAD ended the utterance (hands-free calls).",
    (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.75, 1.0, 1.5, 2.0, 3.0),
)
# Whisper tiny.en on a CPU: ~0.2-0.6 s for 3-10 s of speech; ~20 ms on a GPU.
ASR = _stage(
    "personatalk_asr_seconds",
    "Transcribing an utterance (queue asr) or a partial transcript (asr_partial).",
    (0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.5, 5.0, 10.0, 30.0),
)
# MiniLM query embedding plus the Chroma query: ~5-30 ms.
RETRIEVAL = _stage(
    "personatalk_retrieval_seconds",
    "Memory retrieval: embedding the query and searching the index (engine: the embedding model).",
    (0.0025, 0.005, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
# SmolLM2 on a CPU: 150-240 ms after the prompt; a server engine adds its own queue.
LLM_FIRST_TOKEN = _stage(
    "personatalk_llm_first_token_seconds",
    "From the reply job's start (history, memories, prompt) to the engine's first token.",
    (0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.5, 5.0, 10.0),
)
# Piper's first sentence: ~40 ms on a CPU.
TTS_FIRST_AUDIO = _stage(
    "personatalk_tts_first_audio_seconds",
    "Synthesizing a reply's first spoken unit until its first audio was sent (engine: piper or espeak).",
    (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0),
)
# What a caller feels: end of speech to the reply's first audio leaving the socket (~1-2 s on CPUs).
VOICE_TO_VOICE = _stage(
    "personatalk_voice_to_voice_seconds",
    "From the end of the user's speech to the reply's first audio sent to the socket (engine: LLM_BACKEND).",
    (0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 7.5, 10.0, 20.0),
)

_job_queue: ContextVar[str] = ContextVar("metrics_job_queue", default=EDGE)


def job_queue_set(queue: str | None) -> None:
    """The queue of the job this thread runs now (set as each task starts; None after it)."""
    _job_queue.set(queue or EDGE)


def stage_observe(histogram: Histogram, *, engine: str, seconds: float, queue: str | None = None) -> None:
    """Record one turn stage's time; `queue` defaults to the running job's (`edge` outside one)."""
    histogram.labels(engine=engine or "unknown", queue=queue or _job_queue.get()).observe(max(0.0, seconds))


def engine_label(engine: object) -> str:
    """An LLM engine's kind ("transformers", "openai", "scripted"), without its model or URL."""
    return str(getattr(engine, "name", "") or type(engine).__name__).split(":", 1)[0]


# --- Celery queue depths (read from the Redis broker at scrape time) ------------------------------

# kombu's Redis transport keeps a queue's messages of priority 0 under the queue's name and others
# under "<name>\x06\x16<step>"; all are counted.
_PRIORITY_SUFFIXES = ("", "\x06\x163", "\x06\x166", "\x06\x169")


def celery_queues() -> list[str]:
    """The queues tasks are routed to (CELERY_TASK_ROUTES), those /ready watches, and Celery's default."""
    from django.conf import settings

    routed = {route["queue"] for route in settings.CELERY_TASK_ROUTES.values() if route.get("queue")}
    return sorted(routed | set(settings.READY_QUEUES) | {"celery"})


class QueueDepthCollector:
    """`personatalk_queue_depth{queue}`: messages waiting in each Celery queue, read from the broker
    (LLEN) at each scrape. The broker unreachable: the family is empty and the scrape still answers."""

    NAME = "personatalk_queue_depth"
    HELP = "Messages waiting in each Celery queue (read from the Redis broker at scrape time)."

    def __init__(self, url: str):
        import redis

        self.client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)

    def describe(self):
        return [GaugeMetricFamily(self.NAME, self.HELP, labels=["queue"])]

    def collect(self):
        import redis

        family = GaugeMetricFamily(self.NAME, self.HELP, labels=["queue"])
        queues = celery_queues()
        try:
            pipe = self.client.pipeline(transaction=False)
            for queue in queues:
                for suffix in _PRIORITY_SUFFIXES:
                    pipe.llen(queue + suffix)
            lengths = pipe.execute()
        except redis.RedisError as exc:
            log.warning("queue depths: the broker did not answer (%r)", exc)
        else:
            step = len(_PRIORITY_SUFFIXES)
            for i, queue in enumerate(queues):
                family.add_metric([queue], sum(lengths[i * step : (i + 1) * step]))
        yield family


_queue_depths: QueueDepthCollector | None = None


def queue_depths_install(broker_url: str) -> bool:
    """Register the queue-depth collector once per process (a Redis broker only: the embedded mode's
    in-process tasks have no queue to read)."""
    global _queue_depths
    if _queue_depths is None and broker_url.startswith(("redis://", "rediss://", "unix://")):
        _queue_depths = QueueDepthCollector(broker_url)
        REGISTRY.register(_queue_depths)
    return _queue_depths is not None


# --- a worker process's own port ------------------------------------------------------------------

_serving_pid: int | None = None


def metrics_serve(*, port: int, address: str) -> bool:
    """Serve this process's metrics over HTTP on `port` (prometheus-client's server, in a thread), once
    per process. A port already taken is logged, not raised: the worker works on without metrics."""
    global _serving_pid
    if _serving_pid == os.getpid():
        return False
    try:
        start_http_server(port, addr=address)
    except OSError as exc:
        log.error("metrics: cannot listen on %s:%s (%s); set METRICS_PORT per worker process", address, port, exc)
        return False
    _serving_pid = os.getpid()
    log.info("metrics: serving on http://%s:%s/metrics (pid %s)", address, port, os.getpid())
    return True
