"""The embedding model as the memory domain sees it: texts in, unit vectors out.

The model is an engine of the embed workers (workers/embed/engine.py). The domain reaches it
through the setting MEMORY_EMBEDDING_ENGINE, the way Django names its cache and mail backends, so
memory code never imports worker internals (the import-linter contracts in pyproject.toml); only
jobs on the embed, batch and llm queues ever call these, and they load the model once per process.
"""

from importlib import import_module

from django.conf import settings


def _engine():
    return import_module(settings.MEMORY_EMBEDDING_ENGINE)


def embedder(model: str | None = None):
    """The loaded embedding model (`model`: a name or path; default EMBED_MODEL): `.encode`, `.encode_query`."""
    return _engine().get_embedder(model)


def embedder_check(model: str) -> None:
    """Raise EngineConfigError (apps.core.errors) if nobody could load `model`, without loading it."""
    _engine().model_dir(model)
