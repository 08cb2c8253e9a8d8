"""The model as it ships: one stored form per precision, its size report, and loading it back.

A tinyasc model file (``format: tinyasc-model-1``) holds the model's name and parameters, classes,
frontend, band normalisation, ``storage`` and ``state``: the tensors exactly as stored, which the DCASE
2021 size report counts (non-zero values times the bytes of each tensor's dtype). Storages:

- ``float32``: the trained weights (``model.pt``).
- ``float16``: conv/linear tensors float16, batch norm float32 (the Keras baseline; ``model_float16.pt``).
- ``int8``: the FX int8 graph after post-training static quantisation or quantisation-aware training
  (``compress/int8.py``: int8 weights, float32 scales, narrow integer zero points, float32 biases and
  any layer left float; ``model_int8.pt``).
- ``binary``: the 1-bit layers as packed sign bits (``name::bits``, uint8, eight weights per byte, LSB
  first along the flattened weight; counted in full, since a zero byte holds eight weights rather than
  a pruned value) plus one float32 scale per layer (``name::scale``); the layers kept full precision
  (first and last by default) float16, batch norm float32 (``model_binary.pt``).
- ``qat``: a quantisation-aware training run's fake-quantised float model (``model.pt`` of such runs;
  what ships is its ``int8`` conversion).

Every file loads with ``torch.load(weights_only=True)``: tensors, numbers, strings and plain containers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from tinyasc.compress import int8
from tinyasc.compress.quantize import load_as_stored, quantize_float16
from tinyasc.compress.size import SizeReport, count_tensors, example_input, storage_tensors

PRECISIONS = ("float32", "float16", "int8", "int8-qat", "binary")
FILE_NAMES = {
    "float32": "model.pt",
    "float16": "model_float16.pt",
    "int8": "model_int8.pt",
    "binary": "model_binary.pt",
}
BN_MODES = {
    "float32": "kept",
    "float16": "kept-float32",
    "int8": "folded into the conv (float32 where no conv feeds it)",
    "binary": "kept-float32",
    "qat": "kept",
}


class ShipError(ValueError):
    pass


def check_precision(precision: str, model_params: dict) -> None:
    if precision not in PRECISIONS:
        raise ShipError(f"quantize: {precision!r}; expected one of {', '.join(PRECISIONS)}")
    binary = bool(model_params.get("binary", False))
    if precision == "binary" and not binary:
        raise ShipError("quantize=binary needs a 1-bit model: set model.params={binary: true}")
    if binary and precision in ("int8", "int8-qat"):
        raise ShipError(f"quantize={precision} and a 1-bit model (model.params.binary) conflict; pick one")


def storage_of(precision: str) -> str:
    return "int8" if precision == "int8-qat" else precision


def load_float_artifact(path: str | Path, purpose: str, hint: str = "") -> dict:
    """A tinyasc model file holding float weights (float32 or float16), for ``purpose`` to start from."""
    from tinyasc.train.checkpoint import CheckpointError, load_checkpoint

    art = load_checkpoint(path)
    if art.get("format") != "tinyasc-model-1":
        raise CheckpointError(f"{path}: not a tinyasc model file (format {art.get('format')!r})")
    if art.get("storage") not in ("float32", "float16"):
        raise ShipError(
            f"{path}: stored as {art.get('storage')}; {purpose} starts from float weights (model.pt of a run)"
            + (f"; {hint}" if hint else "")
        )
    return art


def normalizer_of(art: dict):
    """The band normalisation stored with a model file."""
    from tinyasc.frontend import Normalizer

    norm = Normalizer(len(art["norm_mean"]))
    norm.mean.copy_(art["norm_mean"])
    norm.std.copy_(art["norm_std"])
    return norm


def build_model(art: dict) -> nn.Module:
    """The float model of an artifact's architecture (weights not loaded)."""
    from tinyasc.models import create_model

    return create_model(art["model_name"], n_classes=len(art["classes"]), **art["model_params"])


def stored_state(
    model: nn.Module,
    precision: str,
    calibration: Callable[[], Iterable[torch.Tensor]] | None = None,
) -> tuple[dict, dict]:
    """``(state, extra artifact fields)`` of a trained model stored at ``precision``.

    ``int8`` needs ``calibration`` (a callable giving normalised log-mel batches of training clips);
    ``int8-qat`` takes the QAT-prepared model of a quantisation-aware training run.
    """
    if precision == "float32":
        return {k: v.detach().cpu() for k, v in model.state_dict().items()}, {}
    if precision == "float16":
        return quantize_float16(model), {}
    if precision == "int8":
        if calibration is None:
            raise ShipError("int8 post-training quantisation needs calibration clips")
        prepared = int8.prepare(model, example_input(model))
        seen = int8.calibrate(prepared, calibration())
        tensors, meta = int8.encode_state(int8.convert(prepared).state_dict())
        return tensors, {
            "int8": {"method": "ptq", "backend": int8.BACKEND, "calibration_clips": seen, "meta": meta}
        }
    if precision == "int8-qat":
        tensors, meta = int8.encode_state(int8.convert(model).state_dict())
        return tensors, {"int8": {"method": "qat", "backend": int8.BACKEND, "meta": meta}}
    if precision == "binary":
        return pack_binary(model)
    raise ShipError(f"unknown precision {precision!r}")


def pack_binary(model: nn.Module) -> tuple[dict, dict]:
    from tinyasc.models.binary import BinaryConv2d, BinaryLinear, binary_weight

    layers = [n for n, m in model.named_modules() if isinstance(m, BinaryConv2d | BinaryLinear)]
    if not layers:
        raise ShipError(
            "binary storage: the model has no 1-bit layers (train with model.params={binary: true})"
        )
    binary = set(layers)
    state: dict[str, torch.Tensor] = {}
    shapes = {}
    for key, t in storage_tensors(model, "float16"):  # kept layers float16, batch norm float32
        layer, _, attr = key.rpartition(".")
        if layer not in binary or attr != "weight":
            state[key] = t
            continue
        m = model.get_submodule(layer)
        w = m.weight.detach().cpu()
        bits = np.packbits((w >= 0).numpy().reshape(-1), bitorder="little")
        state[f"{key}::bits"] = torch.from_numpy(bits)
        state[f"{key}::scale"] = binary_weight(w, m.scale_mode).abs().reshape(-1)[:1].float()
        shapes[layer] = list(w.shape)
    return state, {"binary": {"layers": layers, "shapes": shapes}}


def unpack_binary(state: dict, info: dict) -> dict[str, torch.Tensor]:
    out = {k: v for k, v in state.items() if "::" not in k}
    for name in info["layers"]:
        shape = info["shapes"][name]
        n = math.prod(shape)
        try:
            bits, scale = state[f"{name}.weight::bits"], state[f"{name}.weight::scale"]
        except KeyError as e:
            raise ShipError(f"binary model file: tensor {e} of layer {name!r} is missing") from None
        signs = np.unpackbits(bits.numpy(), count=n, bitorder="little").astype(np.float32) * 2 - 1
        out[f"{name}.weight"] = torch.from_numpy(signs.reshape(shape)) * float(scale[0])
    return out


def load_stored(art: dict) -> nn.Module:
    """The eval-mode model of an artifact of any storage."""
    model = build_model(art)
    storage = art["storage"]
    state = art["state"]
    if storage in ("float32", "float16"):
        return load_as_stored(model, state).eval()
    if storage == "binary":
        return load_as_stored(model, unpack_binary(state, art["binary"])).eval()
    if storage == "int8":
        q = art["int8"]
        return int8.load_int8(model, example_input(model), state, q["meta"], qat=q["method"] == "qat")
    if storage == "qat":
        prepared = int8.prepare(model, example_input(model), qat=True)
        prepared.load_state_dict(state)
        return prepared.eval()
    raise ShipError(f"unknown storage {storage!r}")


def size_report(art: dict) -> SizeReport:
    """The DCASE 2021 report of what the artifact stores, saying which layers are kept wider."""
    storage = art["storage"]
    report = count_tensors(list(art["state"].items()), storage, BN_MODES.get(storage, "kept"))
    if storage == "binary":
        binary = set(art.get("binary", {}).get("layers", []))
        wide = [
            f"{k.rsplit('.', 1)[0]} ({str(t.dtype).replace('torch.', '')})"
            for k, t in art["state"].items()
            if k.endswith(".weight") and t.dim() > 1 and k.rsplit(".", 1)[0] not in binary
        ]
        report.notes.append(
            f"1-bit weights (packed): {len(binary)} layers; kept wider: {', '.join(wide) or 'none'}"
        )
    elif storage == "int8":
        wide = [
            r.name for r in report.rows if "int8" not in r.dtypes and r.name != "(activation quantisation)"
        ]
        report.notes.append(f"int8 weights; left float32 (not quantisable here): {', '.join(wide) or 'none'}")
    return report
