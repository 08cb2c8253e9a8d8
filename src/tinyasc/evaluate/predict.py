"""Load a run's shipped model and predict class probabilities for a list of clips."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from tinyasc.compress.ship import load_stored, normalizer_of
from tinyasc.config import FrontendConfig
from tinyasc.data.dataset import batches
from tinyasc.frontend import Normalizer
from tinyasc.train.checkpoint import CheckpointError, load_checkpoint
from tinyasc.train.loop import predict_logits


@dataclass
class LoadedModel:
    model: nn.Module
    norm: Normalizer
    frontend: FrontendConfig
    classes: tuple[str, ...]
    storage: str
    path: Path


def shipped_model_path(run_dir: str | Path) -> Path:
    """The model file a run ships (named in size.json), else model.pt."""
    run_dir = Path(run_dir)
    size = run_dir / "size.json"
    if size.exists():
        return run_dir / json.loads(size.read_text())["model_file"]
    return run_dir / "model.pt"


def load_model(path: str | Path) -> LoadedModel:
    """Load a tinyasc model file (any storage: ``compress/ship.py``) or a run directory's shipped model."""
    path = Path(path)
    if path.is_dir():
        path = shipped_model_path(path)
    if path.suffix == ".onnx":  # an export: its contract's frontend; normalisation is inside the graph
        from tinyasc.export import OnnxModel, OnnxNet, check_onnxruntime

        check_onnxruntime()
        onnx = OnnxModel(path)
        return LoadedModel(
            OnnxNet(onnx), nn.Identity(), onnx.frontend, onnx.classes, f"onnx-{onnx.meta['precision']}", path
        )
    art = load_checkpoint(path)
    if art.get("format") != "tinyasc-model-1":
        raise CheckpointError(f"{path}: not a tinyasc model file (format {art.get('format')!r})")
    classes = tuple(art["classes"])
    try:
        model = load_stored(art)
    except (ValueError, KeyError, RuntimeError) as e:
        raise CheckpointError(f"{path}: cannot rebuild its {art.get('storage')} model ({e})") from None
    frontend = FrontendConfig(**art["frontend"])
    return LoadedModel(model, normalizer_of(art), frontend, classes, art["storage"], path)


def feature_logits(lm: LoadedModel, feats: np.ndarray, rows: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Logits (len(rows), C) for rows of a (N, n_mels, frames) log-mel feature array."""
    dummy = np.zeros(len(rows), dtype=np.int64)
    logits, _ = predict_logits(
        lm.model, lm.norm, batches(feats, rows, dummy, batch_size), torch.device("cpu")
    )
    return logits


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Probabilities (float64) of logits divided by the calibration temperature."""
    return torch.softmax(torch.from_numpy(logits).double() / temperature, dim=1).numpy()
