"""int8 quantisation, tinyasc's own: no ``torch.ao.quantization`` (deprecated, and bound to the torch pin).

The scheme (``SCHEME``), the same for post-training quantisation and quantisation-aware training:

- Batch norm is folded into the conv or linear layer that feeds it (``size.fold_batchnorm``: found by
  the data flow of one forward pass, checked by comparing the model's output before and after); a batch
  norm no layer feeds directly (BC-ResNet's SubSpectralNorm, ResNorm) stays float32.
- Every conv and linear layer's weight is int8, symmetric per output channel: ``q = round(w / s)`` in
  -127..127 with ``s = max|w| / 127`` (zero point 0, so a pruned weight is an int8 zero and free), its
  bias float32.
- Every conv and linear layer's input is uint8, affine per tensor: ``q = clamp(round(x / s) + z, 0, 255)``
  with ``s``, ``z`` from the range the layer's input took (min-max over the calibration clips for PTQ; a
  moving average of each batch's min and max, momentum ``MOMENTUM``, during QAT), widened to hold 0.
- Everything else (activations, pooling, additions, unfolded norms) runs in float32, as in onnxruntime's
  QDQ graphs where an operator has no int8 kernel.

``prepare`` returns a copy whose layers observe their input (and, for QAT, fake-quantise input and
weight from the first step, straight-through gradients, so that what trains is what ships);
``calibrate`` runs clips through a PTQ-prepared copy; ``convert`` replaces every observed layer by an
``Int8Layer`` holding its int8 weight, float32 per-channel scales, float32 bias and its input's float32
scale and uint8 zero point. An ``Int8Layer`` computes with exactly those integers (the input quantised
and dequantised, the weight dequantised) in float32 arithmetic, which reproduces an integer kernel's
accumulation up to float32 rounding; it runs at about the float model's speed, and exports to ONNX as
the same arithmetic (``predict`` runs int8 model files so in onnxruntime; ``tinyasc export --int8`` is
the other int8, onnxruntime's own quantisation of the float model, run by its int8 kernels).

A module that offers ``for_quantization()`` is replaced by what it returns before folding (CP-ResNet's
damped conv becomes the plain conv of its damped kernel, BC-ResNet's banded frequency conv a plain
conv). The layers inside a module that declares ``quantization_leaf = True`` stay float32. The quantiser
knows no architecture.

Storage: the converted model's ``state_dict`` is the stored state, plain int8, uint8 and float32 tensors
that ``torch.load(weights_only=True)`` reads and the size report counts as they are; loading rebuilds the
int8 structure from the registered float model (``prepare`` + ``convert`` without data) and loads it.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from tinyasc.compress.size import fold_batchnorm

SCHEME = "tinyasc-int8-1"
WEIGHT_MAX = 127  # symmetric int8 weights in -127..127 (the narrow range: -128 would have no mirror)
INPUT_MIN, INPUT_MAX = 0, 255  # uint8 inputs
MOMENTUM = 0.01  # QAT: weight of each batch's min/max in the moving range of a layer's input
_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Linear)
_EPS = torch.finfo(torch.float32).eps


class Int8Error(ValueError):
    """A model the int8 scheme cannot quantise as it is, or an int8 state that does not fit a model."""


def swap_for_quantization(model: nn.Module) -> nn.Module:
    """Replace, in place, every module that offers ``for_quantization()`` by what it returns (e.g.
    CP-ResNet's damped conv by the plain conv of its damped kernel)."""
    for name, m in list(model.named_modules()):
        if name and callable(getattr(m, "for_quantization", None)):
            parent, _, attr = name.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, attr, m.for_quantization())
    return model


def quantized_layers(model: nn.Module) -> list[str]:
    """Names of the conv/linear layers the scheme quantises: all but those inside a float leaf module."""
    leaves = [n for n, m in model.named_modules() if n and getattr(type(m), "quantization_leaf", False)]
    names = []
    for n, m in model.named_modules():
        if not isinstance(m, _LAYERS) or any(n.startswith(leaf + ".") for leaf in leaves):
            continue
        base = next(t for t in _LAYERS if isinstance(m, t))
        if type(m).forward is not base.forward:  # its own kernel: int8 would not know what it computes
            raise Int8Error(
                f"{n}: {type(m).__name__} has its own forward; it must offer for_quantization() "
                f"returning a plain {base.__name__} to be quantised"
            )
        names.append(n)
    return names


def weight_scale(w: torch.Tensor) -> torch.Tensor:
    """float32 per-output-channel scale of a weight (axis 0): ``max|w| / 127``, at least float32 eps."""
    return (w.detach().abs().reshape(len(w), -1).amax(1) / WEIGHT_MAX).float().clamp_min(_EPS)


def input_qparams(lo: torch.Tensor, hi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(scale float32 (1,), zero point int32 (1,))`` of the uint8 grid over ``[lo, hi]`` widened to hold 0."""
    lo, hi = lo.float().clamp_max(0.0).reshape(1), hi.float().clamp_min(0.0).reshape(1)
    scale = ((hi - lo) / (INPUT_MAX - INPUT_MIN)).clamp_min(_EPS)
    zero = (INPUT_MIN - torch.round(lo / scale)).clamp(INPUT_MIN, INPUT_MAX).to(torch.int32)
    return scale, zero


def fake_quantize(x: torch.Tensor, scale: torch.Tensor | float, zero: int, lo: int, hi: int) -> torch.Tensor:
    """``(clamp(round(x / scale) + zero, lo, hi) - zero) * scale``: the values int8 computes with.

    Written as ``clamp(round(x / scale), lo - zero, hi - zero) * scale``, exactly the same numbers (the
    integers are exact in float32) in four passes over ``x``. ``scale``: a number, or a float32 tensor
    that broadcasts against ``x`` (per channel); ``zero``: an integer. With gradients, the
    straight-through estimator: the gradient passes where ``x`` fell inside the grid and is zero where
    it was clamped."""
    if torch.is_grad_enabled() and x.requires_grad:
        return _StraightThrough.apply(x, scale, zero, lo, hi)
    return x.div(scale).round_().clamp_(lo - zero, hi - zero).mul_(scale)


class _StraightThrough(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, scale, zero, lo, hi):
        q = x.div(scale).round_()
        low, high = lo - zero, hi - zero
        ctx.save_for_backward((q >= low) & (q <= high))
        return q.clamp_(low, high).mul_(scale)

    @staticmethod
    def backward(ctx, grad):
        (inside,) = ctx.saved_tensors
        return grad * inside, None, None, None, None


def _fake_weight(w: torch.Tensor) -> torch.Tensor:
    shape = (-1,) + (1,) * (w.dim() - 1)
    return fake_quantize(w.float(), weight_scale(w).reshape(shape), 0, -WEIGHT_MAX, WEIGHT_MAX)


def _fake_input(x: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor) -> torch.Tensor:
    # the scale and zero point as numbers: elementwise kernels with scalar operands are the fast ones
    return fake_quantize(x.float(), float(scale), int(zero), INPUT_MIN, INPUT_MAX)


def _apply(layer: nn.Module, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None):
    if isinstance(layer, nn.Linear):
        return F.linear(x, weight, bias)
    return layer._conv_forward(x, weight, bias)


class ObservedLayer(nn.Module):
    """A float conv/linear layer that records the range of its input (``input_min``/``input_max``).

    PTQ (``qat=False``): records in any mode and computes in float (calibration). QAT: in training mode
    moves the range towards each batch's and fake-quantises input and weight with it; in eval mode
    fake-quantises with the range it has, so that validating the QAT model is validating the int8 one.
    """

    def __init__(self, layer: nn.Module, qat: bool):
        super().__init__()
        self.layer = layer
        self.qat = qat
        self.register_buffer("input_min", torch.tensor(float("inf")))
        self.register_buffer("input_max", torch.tensor(float("-inf")))

    def observed(self) -> bool:
        return bool(torch.isfinite(self.input_min) and torch.isfinite(self.input_max))

    @torch.no_grad()
    def _observe(self, x: torch.Tensor) -> None:
        lo, hi = x.detach().amin().float(), x.detach().amax().float()
        if not self.qat or not self.observed():  # PTQ: min-max of all clips; QAT: the first batch starts it
            self.input_min.copy_(torch.minimum(self.input_min, lo))
            self.input_max.copy_(torch.maximum(self.input_max, hi))
        else:
            self.input_min.lerp_(lo, MOMENTUM)
            self.input_max.lerp_(hi, MOMENTUM)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.qat:
            self._observe(x)
            return self.layer(x)
        if self.training or not self.observed():
            self._observe(x)
        scale, zero = input_qparams(self.input_min, self.input_max)
        layer = self.layer
        return _apply(layer, _fake_input(x, scale, zero), _fake_weight(layer.weight), layer.bias)


class Int8Layer(nn.Module):
    """A conv/linear layer stored in int8: ``weight`` int8 (-127..127), ``weight_scale`` float32 per output
    channel, ``bias`` float32 (or none), ``input_scale`` float32 and ``input_zero_point`` uint8 (one each).

    Computes ``layer(dequant(quant(x)), dequant(weight))`` in float32 (see the module docstring)."""

    def __init__(self, layer: nn.Module):
        super().__init__()
        if getattr(layer, "padding_mode", "zeros") != "zeros":
            raise Int8Error(f"{type(layer).__name__}: padding_mode {layer.padding_mode!r}; int8 needs zeros")
        self.shell = copy.deepcopy(layer).requires_grad_(False)  # the conv's geometry; its tensors unused
        self.shell.weight = None
        self.shell.bias = None
        w = layer.weight.detach()
        self.register_buffer("weight", torch.zeros(w.shape, dtype=torch.int8))
        self.register_buffer("weight_scale", torch.ones(len(w)))
        self.register_buffer("bias", None if layer.bias is None else torch.zeros(len(w)))
        self.register_buffer("input_scale", torch.ones(1))
        self.register_buffer("input_zero_point", torch.zeros(1, dtype=torch.uint8))
        # the input's scale and zero point as numbers, read once from the buffers whenever they are
        # loaded: the fast elementwise kernels take numbers, and an export then traces constants
        self.register_load_state_dict_post_hook(lambda module, _keys: module._read_qparams())
        self._read_qparams()

    def _read_qparams(self) -> None:
        self.qparams = (float(self.input_scale), int(self.input_zero_point))

    @classmethod
    @torch.no_grad()
    def from_observed(cls, observed: ObservedLayer, name: str) -> Int8Layer:
        if not observed.observed():
            raise Int8Error(f"{name}: its input range was never observed; calibrate on clips first")
        layer = observed.layer
        q = cls(layer)
        w = layer.weight.detach().float().cpu()
        scale = weight_scale(w)
        shape = (-1,) + (1,) * (w.dim() - 1)
        q.weight.copy_(torch.round(w / scale.reshape(shape)).clamp(-WEIGHT_MAX, WEIGHT_MAX).to(torch.int8))
        q.weight_scale.copy_(scale)
        if layer.bias is not None:
            q.bias.copy_(layer.bias.detach().float())
        s, z = input_qparams(observed.input_min.cpu(), observed.input_max.cpu())
        q.input_scale.copy_(s)
        q.input_zero_point.copy_(z.to(torch.uint8))
        q._read_qparams()
        return q

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale, zero = self.qparams
        x = fake_quantize(x.float(), scale, zero, INPUT_MIN, INPUT_MAX)
        shape = (-1,) + (1,) * (self.weight.dim() - 1)
        w = self.weight.float() * self.weight_scale.reshape(shape)
        return _apply(self.shell, x, w, self.bias)


def _replace(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, attr = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, attr, module)


@torch.no_grad()
def _folded(model: nn.Module, example: torch.Tensor) -> nn.Module:
    """``fold_batchnorm`` with its result checked: a batch norm whose feeding layer's output is also used
    elsewhere (a residual taken before the norm) would change the model when folded."""
    folded = fold_batchnorm(model, strict=False, x=example)
    x = torch.randn(2, *example.shape[1:], generator=torch.Generator().manual_seed(0))
    before, after = model.eval()(x), folded(x)
    if not torch.allclose(before, after, rtol=1e-3, atol=1e-3 * float(before.abs().max()) + 1e-6):
        raise Int8Error(
            f"{type(model).__name__}: folding batch norm into the layers that feed it changes the output "
            f"(largest difference {float((before - after).abs().max()):.3g}); the int8 scheme cannot fold it"
        )
    return folded


def prepare(model: nn.Module, example: torch.Tensor, qat: bool = False) -> nn.Module:
    """A copy of ``model`` with batch norm folded and every quantised layer observed (``ObservedLayer``).

    PTQ: an eval-mode copy to ``calibrate``; QAT: a train-mode copy to train, fake-quantised."""
    model = swap_for_quantization(copy.deepcopy(model).cpu().float())
    prepared = _folded(model, example)
    for name in quantized_layers(prepared):
        _replace(prepared, name, ObservedLayer(prepared.get_submodule(name), qat))
    return prepared.train(qat)


@torch.no_grad()
def calibrate(prepared: nn.Module, batches: Iterable[torch.Tensor]) -> int:
    """Run normalised log-mel batches through a prepared model's observers; returns the clips seen."""
    prepared.eval()
    n = 0
    for x in batches:
        prepared(x)
        n += len(x)
    if n == 0:
        raise ValueError("int8 calibration: no clips to calibrate the input ranges on")
    return n


@torch.no_grad()
def convert(prepared: nn.Module) -> nn.Module:
    """The int8 model (a copy, eval mode) of a calibrated or QAT-trained prepared model."""
    q = copy.deepcopy(prepared).cpu().eval()
    observed = [(n, m) for n, m in q.named_modules() if isinstance(m, ObservedLayer)]
    if not observed:
        raise Int8Error(f"{type(prepared).__name__}: not a prepared model (no observed layers)")
    for name, m in observed:
        _replace(q, name, Int8Layer.from_observed(m, name))
    return q


def structure(model: nn.Module, example: torch.Tensor) -> nn.Module:
    """The int8 structure of ``model`` without data: the model a stored int8 state loads into."""
    prepared = prepare(model, example)
    for m in prepared.modules():
        if isinstance(m, ObservedLayer):  # any finite range: the stored state replaces it
            m.input_min.fill_(0.0)
            m.input_max.fill_(1.0)
    return convert(prepared)


def load_int8(model: nn.Module, example: torch.Tensor, state: dict[str, torch.Tensor]) -> nn.Module:
    """The eval-mode int8 model of ``model``'s architecture holding the stored ``state``."""
    q = structure(model, example)
    expected = q.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        what = f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}"
        raise Int8Error(f"int8 state does not fit {type(model).__name__}: {what}")
    for key, t in state.items():
        if t.dtype != expected[key].dtype or t.shape != expected[key].shape:
            raise Int8Error(
                f"int8 state: {key} is {t.dtype} {list(t.shape)}, "
                f"expected {expected[key].dtype} {list(expected[key].shape)}"
            )
    q.load_state_dict(state)
    return q.eval()
