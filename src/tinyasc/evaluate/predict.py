"""Load any trained model (run directory, model file, ONNX export) and predict class probabilities."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from tinyasc import artifact
from tinyasc.artifact import DeviceHeads, LoadedModel
from tinyasc.data.dataset import batches
from tinyasc.export import OnnxModel, OnnxNet, check_onnxruntime
from tinyasc.rundir import RunDir
from tinyasc.train.loop import predict_logits

__all__ = ["LoadedModel", "feature_logits", "load_model", "softmax"]


def load_model(path: str | Path) -> LoadedModel:
    """A run directory's shipped model, a tinyasc model file of any storage, or an ONNX export."""
    path = Path(path)
    if path.is_dir():
        return RunDir(path).load_model()
    if path.suffix == ".onnx":  # an export: its contract's frontend; normalisation is inside the graph
        check_onnxruntime()
        onnx = OnnxModel(path)
        return LoadedModel(
            OnnxNet(onnx), nn.Identity(), onnx.frontend, onnx.classes, f"onnx-{onnx.meta['precision']}", path
        )
    return artifact.load_model(path)


def feature_logits(
    lm: LoadedModel,
    feats: np.ndarray,
    rows: np.ndarray,
    batch_size: int = 64,
    devices: list[str] | None = None,
) -> np.ndarray:
    """Logits (len(rows), C) for rows of a (N, n_mels, frames) log-mel feature array; a model with device
    heads runs each row with the head of its recording device (``devices``, one per row; "" = unknown)."""
    if isinstance(lm.model, DeviceHeads) and devices is not None:
        out = None
        for device in sorted(set(devices)):
            pos = np.array([i for i, d in enumerate(devices) if d == device])
            lm.model.select(device)
            part = feature_logits(lm, feats, rows[pos], batch_size)
            out = np.empty((len(rows), part.shape[1]), dtype=part.dtype) if out is None else out
            out[pos] = part
        lm.model.select("")
        return out if out is not None else np.zeros((0, len(lm.classes)), dtype=np.float32)
    dummy = np.zeros(len(rows), dtype=np.int64)
    logits, _ = predict_logits(
        lm.model, lm.norm, batches(feats, rows, dummy, batch_size), torch.device("cpu")
    )
    return logits


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Probabilities (float64) of logits divided by the calibration temperature."""
    return torch.softmax(torch.from_numpy(logits).double() / temperature, dim=1).numpy()
