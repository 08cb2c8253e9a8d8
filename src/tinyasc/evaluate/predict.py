"""Load any trained model (run directory, model file, ONNX export) and predict class probabilities."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch import nn

from tinyasc import artifact
from tinyasc.artifact import DeviceHeads, LoadedModel
from tinyasc.config import ConfigError
from tinyasc.data.cache import default_cache_dir
from tinyasc.data.dataset import batches
from tinyasc.export import (
    INPUT,
    OUTPUTS,
    OWN_INT8_TOLERANCE,
    Deployable,
    OnnxModel,
    OnnxNet,
    check_onnxruntime,
    export_module,
    layout_transforms,
    onnx_session,
)
from tinyasc.io import atomic_write_json
from tinyasc.rundir import RunDir
from tinyasc.train.loop import predict_logits

__all__ = ["LoadedModel", "feature_logits", "load_model", "softmax"]

log = logging.getLogger(__name__)


def load_model(path: str | Path, runtime: str = "torch") -> LoadedModel:
    """A run directory's shipped model, a tinyasc model file of any storage, or an ONNX export.

    ``runtime``: ``torch``; ``onnxruntime`` (a float or int8 model exported once into the cache folder,
    checked against PyTorch, and run by onnxruntime: 1.9-4.5x faster per clip here for float models,
    1.3-2.5x for int8 ones); ``auto`` = onnxruntime where it is installed and the model is a plain float
    or int8 one, else PyTorch."""
    path = Path(path)
    if runtime not in RUNTIMES:
        raise ConfigError(f"--runtime {runtime!r}: expected one of {', '.join(RUNTIMES)}")
    if path.is_dir():
        lm = RunDir(path).load_model()
        return lm if runtime == "torch" else on_onnxruntime(lm, required=runtime == "onnxruntime")
    if path.suffix == ".onnx":  # an export: its contract's frontend; normalisation is inside the graph
        check_onnxruntime()
        onnx = OnnxModel(path)
        return LoadedModel(
            OnnxNet(onnx), nn.Identity(), onnx.frontend, onnx.classes, f"onnx-{onnx.meta['precision']}", path
        )
    lm = artifact.load_model(path)
    return lm if runtime == "torch" else on_onnxruntime(lm, required=runtime == "onnxruntime")


RUNTIMES = ("auto", "torch", "onnxruntime")
# Largest probability difference to PyTorch on the check inputs, by storage (an int8 model file: the
# same integers in both runtimes, export.OWN_INT8_TOLERANCE for their differently ordered sums).
PARITY_TOLERANCE = {"float32": 1e-4, "float16": 1e-4, "int8": OWN_INT8_TOLERANCE}
# Part of a cached export's key: raised whenever the graph tinyasc exports for a model changes, so that an
# export cached by an older tinyasc is made again. 2: BC-ResNet's ResNorm by reductions (no transposes).
EXPORT_REVISION = 2


def on_onnxruntime(lm: LoadedModel, required: bool) -> LoadedModel:
    """``lm`` run by onnxruntime: exported once per model file into ``$TINYASC_CACHE/onnx`` (keyed by the
    file's bytes, the torch version and ``EXPORT_REVISION``) and checked there against PyTorch on 16
    inputs drawn around the model's band statistics. A model that cannot run there (1-bit, an ensemble,
    device heads, a QAT training graph), a missing onnxruntime or a failed check: an error when
    ``required``, else PyTorch (said in the log). An int8 model runs there as PyTorch runs it: the
    same integers, computed in float32 (``compress/int8.py``)."""
    why = None
    if lm.storage not in PARITY_TOLERANCE or isinstance(lm.model, DeviceHeads):
        why = "device heads" if isinstance(lm.model, DeviceHeads) else f"{lm.storage} storage"
        why += " runs in PyTorch"
    else:
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            why = "onnxruntime is not installed (pip install 'tinyasc[export]')"
    expected = why is not None  # PyTorch by design or by installation (info), not by a failure (warning)
    if why is None:
        try:
            onnx_path, record = cached_export(lm)
        except OSError as e:  # a read-only or full cache folder
            onnx_path, record, why = None, None, f"cannot store its export ({e})"
    if why is None:
        if (
            record["check"]["max_abs_probability_difference"] > PARITY_TOLERANCE[lm.storage]
            or not record["check"]["same_decisions"]
        ):
            why = f"its export differs from PyTorch ({record['check']})"
        else:
            onnx = OnnxModel(onnx_path, threads=torch.get_num_threads())
            return LoadedModel(
                OnnxNet(onnx), nn.Identity(), lm.frontend, lm.classes, f"{lm.storage}, onnxruntime", lm.path
            )
    if required:
        raise ConfigError(f"--runtime onnxruntime: {lm.path}: {why}")
    log.log(logging.INFO if expected else logging.WARNING, "%s runs in PyTorch: %s", lm.path, why)
    return lm


def cached_export(lm: LoadedModel) -> tuple[Path, dict]:
    """The ONNX export of ``lm`` in the cache folder with its parity record, made on first use."""
    stamp = f"{torch.__version__} export {EXPORT_REVISION}".encode()
    key = hashlib.sha256(lm.path.read_bytes() + stamp).hexdigest()[:20]
    folder = default_cache_dir() / "onnx"
    onnx_path = folder / f"{key}.onnx"
    meta_path = Path(str(onnx_path) + ".json")
    if meta_path.exists() and onnx_path.exists():
        return onnx_path, json.loads(meta_path.read_text())
    folder.mkdir(parents=True, exist_ok=True)
    module = Deployable(lm.norm, lm.model).eval()
    example = torch.zeros(1, 1, lm.frontend.n_mels, lm.frontend.n_frames)
    tmp = folder / f".{key}.{os.getpid()}.onnx"
    try:
        export_module(module, example, tmp)
        g = torch.Generator().manual_seed(0)
        mean = getattr(lm.norm, "mean", torch.zeros(lm.frontend.n_mels))[:, None]
        std = getattr(lm.norm, "std", torch.ones(lm.frontend.n_mels))[:, None]
        x = torch.randn(16, 1, *example.shape[2:], generator=g) * std + mean
        with torch.no_grad():
            reference = module(x)[1].double().numpy()
        layout = layout_transforms(lm.model)  # checked as it will run
        probs = onnx_session(tmp, layout_transforms=layout).run([OUTPUTS[1]], {INPUT: x.numpy()})[0]
        probs = probs.astype(np.float64)
        check = {
            "inputs": 16,
            "max_abs_probability_difference": float(np.abs(probs - reference).max()),
            "same_decisions": bool((probs.argmax(1) == reference.argmax(1)).all()),
        }
        record = {
            "format": "tinyasc-onnx-1",
            "precision": "int8" if lm.storage == "int8" else "float32",
            "source": str(lm.path),
            "classes": list(lm.classes),
            "frontend": asdict(lm.frontend),
            "check": check,
            "layout_transforms": layout,
        }
        atomic_write_json(meta_path, record)
        os.replace(tmp, onnx_path)  # the model lands last: a torn export is never read
    finally:
        tmp.unlink(missing_ok=True)
    return onnx_path, record


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
        out = np.zeros((len(rows), len(lm.classes)), dtype=np.float32)
        for pos in lm.model.by_device(devices):
            out[pos] = feature_logits(lm, feats, rows[pos], batch_size)
        return out
    dummy = np.zeros(len(rows), dtype=np.int64)
    logits, _ = predict_logits(
        lm.model, lm.norm, batches(feats, rows, dummy, batch_size), torch.device("cpu")
    )
    return logits


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Probabilities (float64) of logits divided by the calibration temperature."""
    return torch.softmax(torch.from_numpy(logits).double() / temperature, dim=1).numpy()
