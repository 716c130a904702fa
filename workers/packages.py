"""Find model files shipped inside PyPI packages without importing those packages."""

import importlib.util
from pathlib import Path


def package_dir(name: str) -> Path | None:
    """The installed directory of package `name`, or None (found by spec: importing may fail)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])
