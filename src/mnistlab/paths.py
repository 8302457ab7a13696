"""Where mnistlab keeps things: one function per location, each overridable by an env var."""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    """The cache root: ``$MNISTLAB_HOME``, else ``$XDG_CACHE_HOME/mnistlab``, else
    ``~/.cache/mnistlab``."""
    env = os.environ.get("MNISTLAB_HOME")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "mnistlab"


def datasets_dir() -> Path:
    """Folder holding one sub-folder per dataset: ``<home>/datasets/<name>/``."""
    return home() / "datasets"


def runs_dir() -> Path:
    """Default parent folder of training runs: ``./runs`` (relative to where the user works)."""
    return Path(os.environ.get("MNISTLAB_RUNS_DIR", "runs"))
