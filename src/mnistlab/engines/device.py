"""Which torch device a run uses; answers "no CUDA" without importing torch when it can."""

from __future__ import annotations

import importlib.metadata
import os
import sys
from pathlib import Path

from mnistlab.errors import RecipeError


def cuda_present() -> bool:
    """True when torch would find a CUDA device; imports torch only if one could exist.

    A CPU-only torch build (version ``+cpu``) or a machine without NVIDIA device nodes cannot
    have one, and answering that without ``import torch`` keeps the fast path ~2 s quicker.
    """
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return False
    if "torch" not in sys.modules:
        try:
            version = importlib.metadata.version("torch")
        except importlib.metadata.PackageNotFoundError:
            return False
        if "+cpu" in version:
            return False
        if not (Path("/dev/nvidiactl").exists() or Path("/proc/driver/nvidia").exists()):
            return False
    import torch

    return bool(torch.cuda.is_available())


def select_device(device: str | None = None) -> str:
    """The torch device a run uses, chosen once: ``device`` if given, else cuda if present."""
    if device is None:
        return "cuda" if cuda_present() else "cpu"
    if device != "cpu" and not device.startswith("cuda"):
        raise RecipeError(f"device {device!r}: expected 'cpu', 'cuda' or 'cuda:N'")
    if device.startswith("cuda") and not cuda_present():
        raise RecipeError(f"device {device!r} was asked for but torch finds no CUDA device")
    return device
