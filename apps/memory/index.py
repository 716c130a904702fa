"""The vector index: Chroma collections, embedded (a local directory) or a server at CHROMA_URL.

Derived data only: every vector can be rebuilt from the Memory rows. An index (one embedding
model version) is a family of collections, one per owner (user and character): a search only ever
looks at one user's memories of one character, and Chroma's metadata-filtered search over one big
collection was measured at 80-175 ms at 100k vectors on this kind of machine against ~5 ms for an
unfiltered one. Chroma ids are memory ids, so every write is an upsert and any job can run twice.
Vectors always come from workers.embed.engine; no collection ever gets chromadb's default
(downloading) embedding function.
"""

import threading
from collections import defaultdict
from dataclasses import dataclass
from urllib.parse import urlsplit

import numpy as np

_client = None
_lock = threading.Lock()
_collections: dict = {}

# HNSW settings. A user's memories cluster around a few topics, and with Chroma's defaults (16 links
# per vector, 100 candidates per search) a search can stay inside the wrong cluster: up to 1 nearest
# memory in 10 was missed at 3,000 similar vectors, 3 in 10 at 10,000, and the memory a turn needed
# most went unrecalled. 32 links and 500 candidates found every one of them in 12 builds of 3,000
# (tests/memory/test_index.py), for ~0.3 ms more per search; an owner's collection holds hundreds to
# a few thousand vectors, so this is close to an exact search. Links are fixed when a collection is
# made (re-embedding makes new ones); the search width of older collections is raised on first use.
EF_SEARCH = 500
HNSW = {"space": "cosine", "max_neighbors": 32, "ef_search": EF_SEARCH}


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
                _client = chromadb.HttpClient(
                    host=url.hostname,
                    port=url.port or (443 if url.scheme == "https" else 80),
                    ssl=url.scheme == "https",
                    settings=options,
                )
            else:
                _client = chromadb.PersistentClient(path=str(settings.CHROMA_PATH), settings=options)
    return _client


@dataclass(frozen=True)
class Owned:
    """A memory as the index sees it: its id and whose it is."""

    id: str
    user_id: int
    character_id: int
    kind: str


def _name(index: str, user_id: int, character_id: int) -> str:
    return f"{index}--u{user_id}-c{character_id}"


def _collection(name: str, *, create: bool = True):
    """The collection handle (cached: fetching it is a round trip); None if absent and not `create`."""
    from chromadb.errors import NotFoundError

    if name not in _collections:
        client = chroma_client()
        try:
            collection = (
                client.get_or_create_collection(name, embedding_function=None, configuration={"hnsw": HNSW})
                if create
                else client.get_collection(name, embedding_function=None)
            )
        except NotFoundError:
            return None
        if (collection.configuration_json.get("hnsw") or {}).get("ef_search", EF_SEARCH) < EF_SEARCH:
            # made by an earlier version: stored at once, searched that way once Chroma reloads it
            collection.modify(configuration={"hnsw": {"ef_search": EF_SEARCH}})
        _collections[name] = collection
    return _collections[name]


def _retrying(fn):
    """Run fn again with fresh handles if a collection was dropped and made anew behind our back."""

    def wrapper(*args, **kwargs):
        from chromadb.errors import NotFoundError

        try:
            return fn(*args, **kwargs)
        except NotFoundError:
            _collections.clear()
            return fn(*args, **kwargs)

    wrapper.__doc__, wrapper.__name__ = fn.__doc__, fn.__name__
    return wrapper


def _by_owner(items: list[Owned]) -> dict[tuple[int, int], list[int]]:
    groups = defaultdict(list)
    for position, item in enumerate(items):
        groups[(item.user_id, item.character_id)].append(position)
    return groups


@_retrying
def upsert(index: str, items: list[Owned], vectors: np.ndarray) -> None:
    for (user_id, character_id), positions in _by_owner(items).items():
        _collection(_name(index, user_id, character_id)).upsert(
            ids=[items[p].id for p in positions],
            embeddings=vectors[positions],
            metadatas=[{"kind": items[p].kind} for p in positions],
        )


@_retrying
def query(index: str, vector: np.ndarray, *, user_id: int, character_id: int, k: int) -> list[tuple[str, float]]:
    """The `k` nearest of this user's memories of this character: (memory id, cosine similarity)."""
    collection = _collection(_name(index, user_id, character_id), create=False)
    if collection is None:  # nothing remembered yet
        return []
    result = collection.query(query_embeddings=[vector], n_results=k, include=["distances"])
    return [(i, 1.0 - d) for i, d in zip(result["ids"][0], result["distances"][0], strict=True)]


@_retrying
def delete(index: str, items: list[Owned]) -> None:
    for (user_id, character_id), positions in _by_owner(items).items():
        collection = _collection(_name(index, user_id, character_id), create=False)
        if collection is not None:
            collection.delete(ids=[items[p].id for p in positions])


def _family(index: str) -> list[str]:
    prefix = f"{index}--"
    names, offset = [], 0
    while True:
        page = chroma_client().list_collections(limit=1000, offset=offset)
        names += [c.name for c in page if c.name.startswith(prefix)]
        if len(page) < 1000:
            return names
        offset += 1000


@_retrying
def ids(index: str) -> list[str]:
    """Every id in the index (checks and tests)."""
    return [i for name in _family(index) for i in _collection(name).get(include=[])["ids"]]


def owner_vectors(index: str, user_id: int, character_id: int) -> tuple[list[str], np.ndarray]:
    """One owner's ids and stored vectors (checks and benchmarks: exact search to compare with)."""
    collection = _collection(_name(index, user_id, character_id), create=False)
    if collection is None:
        return [], np.zeros((0, 0), dtype=np.float32)
    stored = collection.get(include=["embeddings"])
    return stored["ids"], np.asarray(stored["embeddings"], dtype=np.float32)


def count(index: str) -> int:
    return len(ids(index))


def forget_handles() -> None:
    """Drop cached collection handles (after collections were deleted behind this process's back)."""
    _collections.clear()


def drop(index: str) -> None:
    """Delete every collection of an index."""
    for name in _family(index):
        _collections.pop(name, None)
        try:
            chroma_client().delete_collection(name)
        except Exception:  # noqa: BLE001 - already gone
            pass
