"""int8 quantisation through PyTorch's FX graph mode on the x86 (fbgemm) CPU backend.

- **Post-training static quantisation** (``prepare`` + ``calibrate`` + ``convert``): conv-BN(-ReLU)
  fusion, per-channel symmetric int8 weights, per-tensor affine uint8 activations whose ranges come
  from calibration batches of training clips (the x86 default qconfig: min-max weights, histogram
  activations, reduced range).
- **Quantisation-aware training** (``prepare(..., qat=True)``, train, ``convert``): the same graph with
  fake quantisation and BN folded into the conv during training.

The converted model runs through the real int8 kernels (``torch.ops.quantized``). Modules FX cannot
trace declare it themselves with a class attribute ``quantization_leaf = True`` (BC-ResNet's
SubSpectralNorm and ResNorm, which branch on shapes); they stay float32 leaf modules: FX dequantises
before them and quantises after them, and the size report counts their tensors at float32. A module that
offers ``for_quantization()`` is replaced by what it returns before tracing (CP-ResNet's damped conv
becomes the plain conv of its damped kernel). The quantiser knows no architecture.

Storage (``encode_state``/``decode_state``): the converted model's state dict as plain tensors, each at
the width it needs: a quantised tensor becomes its int8 values plus float32 scales and integer zero
points (per output channel for weights), every integer tensor (zero points) is stored in the narrowest
of uint8/int8/int16/int32 that holds its values, floats (biases, activation scales, unquantised layers)
stay float32. The file therefore holds exactly the tensors the size report counts, and loading it
(``torch.load(weights_only=True)``) never unpickles code. Loading rebuilds the quantised graph from the
registered model (prepare + convert without data) and loads the decoded state into it.
"""

from __future__ import annotations

import contextlib
import copy
import warnings
from collections import OrderedDict
from collections.abc import Iterable

import torch
from torch import nn

BACKEND = "x86"
_INT_WIDTHS = (torch.uint8, torch.int8, torch.int16, torch.int32)


@contextlib.contextmanager
def _quiet():
    """torch.ao.quantization warns on every observer (a deprecation of ``reduce_range``) and on import."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module=r"torch\.ao\..*")
        warnings.filterwarnings("ignore", message=r".*torch\.ao\.quantization is deprecated.*")
        warnings.filterwarnings("ignore", message=r".*reduce_range will be deprecated.*")
        warnings.filterwarnings("ignore", message=r".*must run observer before calling calculate_qparams.*")
        yield


def leaf_types(model: nn.Module) -> list[type]:
    """The module classes of ``model`` that declare ``quantization_leaf``: kept float, not traced."""
    found = {type(m) for m in model.modules() if getattr(type(m), "quantization_leaf", False)}
    return sorted(found, key=lambda t: t.__qualname__)


def swap_for_quantization(model: nn.Module) -> nn.Module:
    """Replace, in place, every module that offers ``for_quantization()`` by what it returns (e.g.
    CP-ResNet's damped conv by the plain conv of its damped kernel, which FX quantises as a module)."""
    for name, m in list(model.named_modules()):
        if name and callable(getattr(m, "for_quantization", None)):
            parent, _, attr = name.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, attr, m.for_quantization())
    return model


def prepare(model: nn.Module, example: torch.Tensor, qat: bool = False) -> nn.Module:
    """FX-prepare a float model for int8 (observers; fake quantisation too when ``qat``).

    PTQ takes an eval-mode copy (conv-BN fused), QAT a train-mode copy (conv-BN kept for training).
    """
    from torch.ao.quantization import get_default_qat_qconfig_mapping, get_default_qconfig_mapping
    from torch.ao.quantization.fx.custom_config import PrepareCustomConfig
    from torch.ao.quantization.quantize_fx import prepare_fx, prepare_qat_fx

    torch.backends.quantized.engine = BACKEND
    custom = PrepareCustomConfig().set_non_traceable_module_classes(leaf_types(model))
    model = swap_for_quantization(copy.deepcopy(model).cpu())
    with _quiet():
        if qat:
            mapping = get_default_qat_qconfig_mapping(BACKEND)
            return prepare_qat_fx(model.train(), mapping, (example,), prepare_custom_config=custom)
        mapping = get_default_qconfig_mapping(BACKEND)
        return prepare_fx(model.eval(), mapping, (example,), prepare_custom_config=custom)


@torch.no_grad()
def calibrate(prepared: nn.Module, batches: Iterable[torch.Tensor]) -> int:
    """Run normalised log-mel batches through the observers; returns the number of clips seen."""
    prepared.eval()
    n = 0
    with _quiet():
        for x in batches:
            prepared(x)
            n += len(x)
    if n == 0:
        raise ValueError("int8 calibration: no clips to calibrate the activation ranges on")
    return n


def convert(prepared: nn.Module) -> nn.Module:
    """The int8 model (a copy) of a calibrated or QAT-trained prepared model, in eval mode."""
    from torch.ao.quantization.quantize_fx import convert_fx

    torch.backends.quantized.engine = BACKEND
    with _quiet():
        return convert_fx(copy.deepcopy(prepared).cpu().eval()).eval()


def _narrow_int(t: torch.Tensor) -> torch.Tensor:
    if t.numel() == 0:
        return t.to(torch.int8)
    lo, hi = int(t.min()), int(t.max())
    for dtype in _INT_WIDTHS:
        info = torch.iinfo(dtype)
        if info.min <= lo and hi <= info.max:
            return t.to(dtype)
    raise ValueError(f"integer tensor with values {lo}..{hi} does not fit int32")


def _encode_tensor(key: str, t: torch.Tensor, out: dict, meta: dict) -> None:
    if t.is_quantized:
        scheme = t.qscheme()
        out[key] = t.int_repr()
        if scheme in (torch.per_channel_affine, torch.per_channel_symmetric):
            out[f"{key}::scales"] = t.q_per_channel_scales().float()
            out[f"{key}::zero_points"] = _narrow_int(t.q_per_channel_zero_points())
            meta[key] = {"kind": "per_channel", "dtype": str(t.dtype), "axis": int(t.q_per_channel_axis())}
        else:
            out[f"{key}::scales"] = torch.tensor([t.q_scale()], dtype=torch.float32)
            out[f"{key}::zero_points"] = _narrow_int(torch.tensor([t.q_zero_point()]))
            meta[key] = {"kind": "per_tensor", "dtype": str(t.dtype)}
    elif t.is_floating_point():
        out[key] = t.float()
        meta[key] = {"kind": "float", "dtype": str(t.dtype)}
    else:
        out[key] = _narrow_int(t)
        meta[key] = {"kind": "int", "dtype": str(t.dtype)}


def encode_state(state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """``(tensors, meta)``: plain tensors to store and what it takes to rebuild the quantised state."""
    out: dict[str, torch.Tensor] = {}
    meta: dict = {}
    for key, v in state.items():
        if isinstance(v, torch.Tensor):
            _encode_tensor(key, v, out, meta)
        elif isinstance(v, tuple):  # a quantised Linear's packed (weight, bias)
            meta[key] = {"kind": "tuple", "items": []}
            for i, t in enumerate(v):
                if t is None:
                    meta[key]["items"].append(None)
                    continue
                _encode_tensor(f"{key}::{i}", t, out, meta)
                meta[key]["items"].append(f"{key}::{i}")
        elif isinstance(v, torch.dtype):
            meta[key] = {"kind": "dtype", "dtype": str(v)}
        elif v is None:  # e.g. the bias of a quantised conv without one
            meta[key] = {"kind": "none"}
        else:
            raise ValueError(f"{key}: cannot store a {type(v).__name__} in an int8 model file")
    versions = getattr(state, "_metadata", None)  # module versions: the quantised Linear's loader reads them
    if versions is not None:
        meta["::versions"] = {k: dict(v) for k, v in versions.items()}
    return out, meta


def _dtype(name: str) -> torch.dtype:
    dtype = getattr(torch, name.replace("torch.", ""), None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"unknown dtype {name!r} in an int8 model file")
    return dtype


def _decode_tensor(key: str, tensors: dict, meta: dict) -> torch.Tensor:
    m = meta[key]
    t = tensors[key]
    if m["kind"] == "per_channel":
        return torch._make_per_channel_quantized_tensor(
            t,
            tensors[f"{key}::scales"].double(),
            tensors[f"{key}::zero_points"].long(),
            m["axis"],
        )
    if m["kind"] == "per_tensor":
        return torch._make_per_tensor_quantized_tensor(
            t, float(tensors[f"{key}::scales"][0]), int(tensors[f"{key}::zero_points"][0])
        )
    return t.to(_dtype(m["dtype"]))


def decode_state(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    """Inverse of ``encode_state``."""
    state: dict = OrderedDict()
    for key, m in meta.items():
        if "::" in key:
            continue  # an item of a tuple (rebuilt with it) or the module versions
        try:
            if m["kind"] == "none":
                state[key] = None
            elif m["kind"] == "tuple":
                state[key] = tuple(
                    None if k is None else _decode_tensor(k, tensors, meta) for k in m["items"]
                )
            elif m["kind"] == "dtype":
                state[key] = _dtype(m["dtype"])
            else:
                state[key] = _decode_tensor(key, tensors, meta)
        except KeyError as e:
            raise ValueError(f"int8 model file: tensor {e} of {key!r} is missing") from None
    state._metadata = OrderedDict((k, dict(v)) for k, v in meta.get("::versions", {}).items())
    return state


def load_int8(model: nn.Module, example: torch.Tensor, tensors: dict, meta: dict, qat: bool) -> nn.Module:
    """Rebuild the int8 graph of ``model`` (a float model of the same architecture) and load the state."""
    q = convert(prepare(model, example, qat=qat))  # the graph without data, then the stored state
    q.load_state_dict(decode_state(tensors, meta))
    return q.eval()
