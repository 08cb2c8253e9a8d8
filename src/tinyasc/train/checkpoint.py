"""Checkpoints: atomic writes, loading without executing code (weights_only=True)."""

from __future__ import annotations

from pathlib import Path

import torch

from tinyasc.io import atomic_torch_save


class CheckpointError(ValueError):
    pass


def save_checkpoint(obj: dict, path: str | Path) -> None:
    atomic_torch_save(obj, path)


def load_checkpoint(path: str | Path) -> dict:
    """Load with ``weights_only=True``: tensors and plain containers only, never pickled code."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"{path}: not a readable tinyasc checkpoint ({e})") from None
