"""The model file: one format for every storage, saved and loaded without executing code.

A tinyasc model file (``format: tinyasc-model-1``) is a dict of plain values and tensors that
``torch.load(weights_only=True)`` reads: the model's registered name and ``model.params``, classes,
frontend, band normalisation (``norm_mean``/``norm_std``), the selected epoch, ``storage`` (the
``tinyasc.storage.Storage`` vocabulary) and ``state``, the tensors exactly as stored, which the DCASE
2021 size report counts (non-zero values times the bytes of each tensor's dtype). Storages:

- ``float32``: the trained weights (a run's ``model.pt``).
- ``float16``: conv/linear tensors float16, batch norm float32 (the Keras baseline).
- ``int8``: the int8 model after post-training static quantisation or quantisation-aware training
  (``compress/int8.py``, scheme ``int8.SCHEME``: batch norm folded, int8 weights with float32
  per-channel scales, float32 biases, each layer input's float32 scale and uint8 zero point, any layer
  left float at float32), with the ``int8`` record of how it was made.
- ``binary``: packed sign bits and per-layer scales of the 1-bit layers (``compress/binary.py``), the
  kept layers float16, batch norm float32, with the ``binary`` record of the packed layers.
- ``qat``: a quantisation-aware training run's fake-quantised float model (batch norm folded, each
  layer's input range observed); what ships is its int8 conversion.

Loading rebuilds the registered architecture and loads the stored tensors into it; nothing in a file
is unpickled code. Where a model file lives in a run is ``rundir.py``'s business, not this module's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from tinyasc.compress import binary, int8
from tinyasc.compress.complexity import Verdict, parameter_bytes, verdict
from tinyasc.compress.quantize import load_as_stored, quantize_float16
from tinyasc.compress.size import SizeReport, count_tensors, example_input, storage_tensors
from tinyasc.config import FrontendConfig, plain
from tinyasc.frontend import Normalizer
from tinyasc.io import CheckpointError, load_checkpoint, save_checkpoint
from tinyasc.models import create_model
from tinyasc.rules import get_rules
from tinyasc.storage import Storage, shipped_storage

FORMAT = "tinyasc-model-1"

# How each storage treats batch norm, printed in its size report.
BN_MODES = {
    Storage.FLOAT32: "kept",
    Storage.FLOAT16: "kept-float32",
    Storage.INT8: "folded into the conv (float32 where no conv feeds it)",
    Storage.BINARY: "kept-float32",
    Storage.QAT: "folded into the conv (float32 where no conv feeds it)",
    Storage.ENSEMBLE: "as each member stores it",
}


class ModelFileError(ValueError):
    """A model file or stored form that cannot be written or rebuilt as asked."""


def new_artifact(
    model_name: str,
    model_params: dict,
    classes: Iterable[str],
    frontend: FrontendConfig,
    norm: Normalizer,
    best_epoch: int,
    storage: Storage,
    state: dict[str, torch.Tensor],
) -> dict:
    """The model-file dict of a trained model (tensors moved to the CPU)."""
    return {
        "format": FORMAT,
        "model_name": model_name,
        "model_params": plain(dict(model_params)),
        "classes": list(classes),
        "frontend": asdict(frontend),
        "norm_mean": norm.mean.detach().cpu(),
        "norm_std": norm.std.detach().cpu(),
        "best_epoch": best_epoch,
        "storage": str(storage),
        "state": {k: v.detach().cpu() for k, v in state.items()},
    }


def save(art: dict, path: str | Path) -> None:
    save_checkpoint(art, path)


def load(path: str | Path) -> dict:
    """A model file's dict; refuses anything that is not a tinyasc model file."""
    art = load_checkpoint(path)
    if art.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a tinyasc model file (format {art.get('format')!r})")
    return art


def storage_of(art: dict) -> Storage:
    try:
        return Storage(art["storage"])
    except ValueError:
        raise ModelFileError(f"unknown storage {art['storage']!r} in a model file") from None


def load_float(path: str | Path, purpose: str, hint: str = "") -> dict:
    """A model file holding float weights (float32 or float16), for ``purpose`` to start from."""
    return check_float(load(path), path, purpose, hint)


def check_float(art: dict, path: str | Path, purpose: str, hint: str = "") -> dict:
    """``art`` if it holds float weights; else an error naming ``path`` and what ``purpose`` needs."""
    if art.get("storage") not in (Storage.FLOAT32, Storage.FLOAT16):
        raise ModelFileError(
            f"{path}: stored as {art.get('storage')}; {purpose} starts from float weights (model.pt of a run)"
            + (f"; {hint}" if hint else "")
        )
    return art


def build_model(name: str, n_classes: int, params: dict) -> nn.Module:
    """A registered model with ``model.params``; the 1-bit options binarize it (weights not loaded)."""
    arch, options = binary.split_options(dict(params))
    return binary.apply_options(create_model(name, n_classes=n_classes, **arch), options)


def build_float_model(art: dict) -> nn.Module:
    """The float model of a model file's architecture (weights not loaded; an ensemble's members are)."""
    if art.get("storage") == Storage.ENSEMBLE:
        return load_stored(art)
    return build_model(art["model_name"], len(art["classes"]), art["model_params"])


def normalizer_of(art: dict) -> Normalizer:
    """The band normalisation stored with a model file."""
    norm = Normalizer(len(art["norm_mean"]))
    norm.mean.copy_(art["norm_mean"])
    norm.std.copy_(art["norm_std"])
    return norm


def stored_state(
    model: nn.Module,
    quantize: str,
    calibration: Callable[[], Iterable[torch.Tensor]] | None = None,
) -> tuple[dict, dict]:
    """``(state, extra model-file fields)`` of a trained model stored as ``quantize`` asks.

    ``int8`` needs ``calibration`` (a callable giving normalised log-mel batches of training clips);
    ``int8-qat`` takes the QAT-prepared model of a quantisation-aware training run.
    """
    if quantize == "float32":
        return {k: v.detach().cpu() for k, v in model.state_dict().items()}, {}
    if quantize == "float16":
        return quantize_float16(model), {}
    if quantize == "float16-all":
        return dict(storage_tensors(model, "float16-all")), {}
    if quantize == "int8":
        if calibration is None:
            raise ModelFileError("int8 post-training quantisation needs calibration clips")
        prepared = int8.prepare(model, example_input(model))
        seen = int8.calibrate(prepared, calibration())
        state = int8.convert(prepared).state_dict()
        return state, {"int8": {"method": "ptq", "scheme": int8.SCHEME, "calibration_clips": seen}}
    if quantize == "int8-qat":
        state = int8.convert(model).state_dict()
        return state, {"int8": {"method": "qat", "scheme": int8.SCHEME}}
    if quantize == "binary":
        try:
            return binary.pack_binary(model)
        except binary.BinaryPackError as e:
            raise ModelFileError(str(e)) from None
    raise ModelFileError(f"unknown quantize value {quantize!r}")


def stored_artifact(
    art: dict, model: nn.Module, quantize: str, calibration: Callable | None = None
) -> tuple[dict, bool]:
    """``(the model file as it ships at quantize, whether it differs from art)``."""
    storage = shipped_storage(quantize)
    if storage == Storage.FLOAT32 and art["storage"] == Storage.FLOAT32:
        return art, False  # the float32 model file is what ships
    state, extra = stored_state(model, quantize, calibration)
    if "device_heads" in art:  # each device's head at the dtype its shared layer is stored in
        if not storage.is_float:
            raise ModelFileError(f"device heads ship at float32 or float16, not {storage}")
        dh = art["device_heads"]
        heads = {d: {k: t.to(state[k].dtype) for k, t in h.items()} for d, h in dh["heads"].items()}
        extra["device_heads"] = dict(dh, heads=heads)
    return dict(art, storage=str(storage), state=state, **extra), True


class Ensemble(nn.Module):
    """Members averaged as one model: raw log-mel in, each member's own band normalisation and network,
    the mean of the members' probabilities out (as logits: their logarithm, so that a softmax gives it
    back and a temperature divides it as for any model)."""

    def __init__(self, members: list[tuple[nn.Module, nn.Module]]):
        super().__init__()
        self.nets = nn.ModuleList(net for net, _ in members)
        self.norms = nn.ModuleList(norm for _, norm in members)
        self.n_mels, self.frames = self.nets[0].n_mels, self.nets[0].frames

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        probs = [
            torch.softmax(net(norm(x)).float(), dim=1)
            for net, norm in zip(self.nets, self.norms, strict=True)
        ]
        return torch.log(torch.stack(probs).mean(0).clamp_min(1e-12))


class DeviceHeads(nn.Module):
    """A shared model whose head (its last layers) is swapped for the recording device's own (DCASE 2025:
    the device is known at test time). ``select(device)`` loads that device's head, or the shared one for
    a device without a head (an unknown device falls back to the shared model)."""

    def __init__(self, model: nn.Module, heads: dict[str, dict[str, torch.Tensor]]):
        super().__init__()
        self.model = model
        self.n_mels, self.frames = model.n_mels, model.frames
        params = dict(model.named_parameters())
        names = sorted({k for h in heads.values() for k in h})
        self.shared = {k: params[k].detach().clone() for k in names}
        self.heads = {d: {k: t.float() for k, t in h.items()} for d, h in heads.items()}
        self.selected = ""

    @torch.no_grad()
    def select(self, device: str) -> None:
        head = self.heads.get(device, self.shared)
        params = dict(self.model.named_parameters())
        for k, t in head.items():
            params[k].copy_(t)
        self.selected = device if device in self.heads else ""

    def by_device(self, devices: Sequence[str]) -> Iterator[np.ndarray]:
        """The positions of ``devices`` grouped by device, that device's head selected while its group
        runs; the shared head again afterwards."""
        devices = np.asarray(devices)
        try:
            for device in sorted(set(devices.tolist())):
                self.select(device)
                yield np.flatnonzero(devices == device)
        finally:
            self.select("")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def new_ensemble(members: list[dict], names: list[str]) -> dict:
    """The model file of stored ``members`` averaged as one; they must share classes and frontend."""
    if len(members) < 2:
        raise ModelFileError("an ensemble needs at least two members")
    first = members[0]
    for name, m in zip(names, members, strict=True):
        if list(m["classes"]) != list(first["classes"]) or m["frontend"] != first["frontend"]:
            raise ModelFileError(
                f"{name}: its classes or frontend differ from {names[0]}'s; members must share both"
            )
        if m["storage"] == Storage.ENSEMBLE:
            raise ModelFileError(f"{name}: an ensemble already; list its members instead")
    return {
        "format": FORMAT,
        "model_name": "ensemble",
        "model_params": {"members": [m["model_name"] for m in members]},
        "classes": list(first["classes"]),
        "frontend": dict(first["frontend"]),
        "best_epoch": 0,
        "storage": str(Storage.ENSEMBLE),
        "state": {},
        "members": members,
        "member_names": list(names),
    }


def load_stored(art: dict) -> nn.Module:
    """The eval-mode model of a model file of any storage."""
    if storage_of(art) == Storage.ENSEMBLE:
        return Ensemble([(load_stored(m), normalizer_of(m)) for m in art["members"]]).eval()
    model = build_float_model(art)
    storage, state = storage_of(art), art["state"]
    if storage.is_float:
        model = load_as_stored(model, state).eval()
        return DeviceHeads(model, art["device_heads"]["heads"]).eval() if "device_heads" in art else model
    if storage == Storage.BINARY:
        return load_as_stored(model, binary.unpack_binary(state, art["binary"])).eval()
    if storage == Storage.INT8:
        scheme = art.get("int8", {}).get("scheme")
        if scheme != int8.SCHEME:  # the files of tinyasc's earlier torch.ao FX quantiser have none
            raise ModelFileError(
                f"int8 scheme {scheme!r}, expected {int8.SCHEME!r}: an int8 file of an earlier tinyasc "
                "(torch.ao FX quantisation); compress its float run again to ship it int8"
            )
        try:
            graph = int8.load_int8(model, example_input(model), state)
        except int8.Int8Error as e:
            raise ModelFileError(str(e)) from None
    else:  # Storage.QAT
        graph = int8.prepare(model, example_input(model), qat=True)
        graph.load_state_dict(state)
    # the traced graph keeps the input shape the model declares (an ensemble of int8 members reads it)
    graph.n_mels, graph.frames = model.n_mels, model.frames
    return graph.eval()


def float_architecture(art: dict) -> nn.Module:
    """The float model of the file's architecture, an ensemble's members included, for counting its
    parameters and MACs (a stored int8 or 1-bit layer holds no ``nn.Parameter`` to count)."""
    if storage_of(art) == Storage.ENSEMBLE:
        return Ensemble([(float_architecture(m), normalizer_of(m)) for m in art["members"]]).eval()
    return build_float_model(art)


def rules_verdict(art: dict, rules: str, report: SizeReport | None = None) -> Verdict:
    """An edition's complexity verdict on a model file: as stored, at the clip length it was trained on
    (``report``: the file's ``size_report`` where the caller has it already)."""
    return verdict(
        get_rules(rules),
        float_architecture(art),
        FrontendConfig(**art["frontend"]).duration,
        parameter_bytes(stored_tensors(art)),
        (report or size_report(art)).nonzero_bytes,
        extra_params=sum(t.numel() for _, t in head_tensors(art)),
    )


def stored_tensors(art: dict) -> list[tuple[str, torch.Tensor]]:
    """Every tensor the model file stores, by name (an ensemble's members prefixed ``m0.``, ``m1.``...)."""
    if storage_of(art) == Storage.ENSEMBLE:
        return [(f"m{i}.{k}", t) for i, m in enumerate(art["members"]) for k, t in stored_tensors(m)]
    return list(art["state"].items()) + head_tensors(art)


def head_tensors(art: dict) -> list[tuple[str, torch.Tensor]]:
    """The device heads of a model file, named ``head[<device>].<parameter>`` ([] without heads)."""
    heads = art.get("device_heads", {}).get("heads", {})
    return [(f"head[{d}].{k}", t) for d, h in sorted(heads.items()) for k, t in h.items()]


def size_report(art: dict) -> SizeReport:
    """The DCASE 2021 report of what the model file stores, saying which layers are kept wider. An
    ensemble counts every member as it is stored (rows ``m0.conv1``, ``m1.conv1``, ...)."""
    storage = storage_of(art)
    if storage == Storage.ENSEMBLE:
        parts = [size_report(m) for m in art["members"]]
        rows = [
            dataclasses.replace(r, name=f"m{i}.{r.name}") for i, part in enumerate(parts) for r in part.rows
        ]
        report = SizeReport(rows, "ensemble", BN_MODES[storage])
        for i, (name, part) in enumerate(zip(art.get("member_names", []), parts, strict=False)):
            report.notes.append(
                f"member m{i}: {name} ({art['members'][i]['model_name']}, {part.precision}), "
                f"{part.nonzero_bytes:,} bytes"
            )
        return report
    bn_mode = BN_MODES[storage]
    floats = [t for t in art["state"].values() if t.is_floating_point()]
    if storage == Storage.FLOAT16 and all(t.dtype == torch.float16 for t in floats):
        bn_mode = "kept"  # quantize float16-all: batch norm float16 as well
    report = count_tensors(list(art["state"].items()) + head_tensors(art), str(storage), bn_mode)
    if "device_heads" in art:
        heads = art["device_heads"]["heads"]
        report.notes.append(
            f"device heads for {', '.join(sorted(heads))} ({', '.join(art['device_heads']['layers'])}), "
            "counted with the shared model; other devices use the shared head"
        )
    if storage == Storage.BINARY:
        packed = set(art.get("binary", {}).get("layers", []))
        wide = [
            f"{k.rsplit('.', 1)[0]} ({str(t.dtype).replace('torch.', '')})"
            for k, t in art["state"].items()
            if k.endswith(".weight") and t.dim() > 1 and k.rsplit(".", 1)[0] not in packed
        ]
        report.notes.append(
            f"1-bit weights (packed): {len(packed)} layers; kept wider: {', '.join(wide) or 'none'}"
        )
    elif storage == Storage.INT8:
        wide = [
            r.name for r in report.rows if "int8" not in r.dtypes and r.name != "(activation quantisation)"
        ]
        report.notes.append(f"int8 weights; left float32 (not quantisable here): {', '.join(wide) or 'none'}")
    return report


@dataclass
class LoadedModel:
    """A model ready to predict: the network, its normalisation, frontend and classes."""

    model: nn.Module
    norm: nn.Module
    frontend: FrontendConfig
    classes: tuple[str, ...]
    storage: str
    path: Path


def load_model(path: str | Path) -> LoadedModel:
    """Load a tinyasc model file of any storage, ready to predict."""
    path = Path(path)
    art = load(path)
    try:
        model = load_stored(art)
    except (ValueError, KeyError, RuntimeError) as e:
        raise CheckpointError(f"{path}: cannot rebuild its {art.get('storage')} model ({e})") from None
    frontend = FrontendConfig(**art["frontend"])
    # an ensemble normalises inside, each member with its own statistics
    norm = nn.Identity() if storage_of(art) == Storage.ENSEMBLE else normalizer_of(art)
    return LoadedModel(model, norm, frontend, tuple(art["classes"]), art["storage"], path)
