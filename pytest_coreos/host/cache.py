"""The plugin's cache folder on this machine: downloads, and facts that are slow to learn.

``$PYTEST_COREOS_CACHE``, else ``$XDG_CACHE_HOME/pytest-coreos`` (``~/.cache/pytest-coreos``).
Everything kept there can be deleted at any time: it is learned or fetched again.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

CACHE_ENVIRONMENT = "PYTEST_COREOS_CACHE"


def cache_home() -> Path:
    """The cache folder (not created)."""
    given = os.environ.get(CACHE_ENVIRONMENT)
    if given:
        return Path(given)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "pytest-coreos"


def read_json(name: str) -> dict[str, Any]:
    """The JSON object kept in the cache file ``name``; empty when it is missing, unreadable
    or not an object."""
    try:
        loaded = json.loads((cache_home() / name).read_text())
    except (OSError, ValueError):
        return {}
    return loaded if isinstance(loaded, dict) else {}


def write_json(name: str, data: dict[str, Any]) -> None:
    """Replace the cache file ``name`` with ``data`` in one step, so that a concurrent
    reader sees the old file or the new one. A cache that cannot be written is left
    alone: it only saves time."""
    folder = cache_home()
    with contextlib.suppress(OSError):
        folder.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(prefix=f".{name}.", dir=folder)
        try:
            with os.fdopen(descriptor, "w") as handle:
                json.dump(data, handle, indent=1, sort_keys=True)
            os.replace(temporary, folder / name)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
