"""The vector index: Chroma collections, embedded (a local directory) or a server at CHROMA_URL.

Derived data only: every vector can be rebuilt from the Memory rows. Chroma ids are memory ids,
so every write is an upsert and any job can run twice. Vectors always come from
workers.embed.engine; no collection ever gets chromadb's default (downloading) embedding function.
"""

import threading
from dataclasses import dataclass
from urllib.parse import urlsplit

import numpy as np

_client = None
_lock = threading.Lock()


def chroma_client():
    """This process's Chroma client, built from the settings on first use."""
    global _client
    with _lock:
        if _client is None:
            import chromadb
            from chromadb.config import Settings as ChromaSettings
            from django.conf import settings

            options = ChromaSettings(anonymized_telemetry=False)
            if settings.CHROMA_URL:
                url = urlsplit(settings.CHROMA_URL)
                _client = chromadb.HttpClient(host=url.hostname, port=url.port or (443 if url.scheme == "https" else 80),
                                              ssl=url.scheme == "https", settings=options)  # fmt: skip
            else:
                _client = chromadb.PersistentClient(path=str(settings.CHROMA_PATH), settings=options)
    return _client


_collections: dict = {}


def _collection(name: str):
    """The collection handle (cached: fetching it is a round trip to the server)."""
    if name not in _collections:
        _collections[name] = chroma_client().get_or_create_collection(
            name, embedding_function=None, configuration={"hnsw": {"space": "cosine"}}
        )
    return _collections[name]


def _retrying(fn):
    """Run fn(collection name, ...) again with a fresh handle if the collection was dropped and made anew."""

    def wrapper(collection: str, *args, **kwargs):
        from chromadb.errors import NotFoundError

        try:
            return fn(collection, *args, **kwargs)
        except NotFoundError:
            _collections.pop(collection, None)
            return fn(collection, *args, **kwargs)

    wrapper.__doc__, wrapper.__name__ = fn.__doc__, fn.__name__
    return wrapper


@dataclass(frozen=True)
class Owned:
    """What the index stores beside a vector: whose memory it is, so queries filter by owner."""

    id: str
    user_id: int
    character_id: int
    kind: str


@_retrying
def upsert(collection: str, items: list[Owned], vectors: np.ndarray) -> None:
    if not items:
        return
    _collection(collection).upsert(
        ids=[item.id for item in items],
        embeddings=vectors,
        metadatas=[{"user_id": item.user_id, "character_id": item.character_id, "kind": item.kind} for item in items],
    )


@_retrying
def query(collection: str, vector: np.ndarray, *, user_id: int, character_id: int, k: int) -> list[tuple[str, float]]:
    """The `k` nearest of this user's memories of this character: (memory id, cosine similarity)."""
    result = _collection(collection).query(
        query_embeddings=[vector], n_results=k, include=["distances"],
        where={"$and": [{"user_id": user_id}, {"character_id": character_id}]},
    )  # fmt: skip
    return [(i, 1.0 - d) for i, d in zip(result["ids"][0], result["distances"][0])]


@_retrying
def delete(collection: str, ids: list[str]) -> None:
    if ids:
        _collection(collection).delete(ids=ids)


@_retrying
def count(collection: str) -> int:
    return _collection(collection).count()


@_retrying
def ids(collection: str) -> list[str]:
    """Every id in the collection (checks and tests; at 100k this is one large response)."""
    return _collection(collection).get(include=[])["ids"]


def forget_handles() -> None:
    """Drop cached collection handles (after collections were deleted behind this process's back)."""
    _collections.clear()


def drop(collection: str) -> None:
    _collections.pop(collection, None)
    try:
        chroma_client().delete_collection(collection)
    except Exception:  # already gone  # noqa: BLE001
        pass
