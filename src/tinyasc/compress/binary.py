"""1-bit weights for any model: sign times a per-layer scale, trained with a straight-through estimator.

The recipe of McDonnell (ICLR 2018; DCASE 2020 Task 1b, the closest documented relative of Liu_UESTC's
42.5 KB system, reference ``top_systems.md`` 4): full-precision shadow weights are kept and trained; the
forward pass uses ``sign(w) * scale`` with the fixed per-layer scale ``sqrt(2 / fan_in)`` (He's
standard deviation), the backward pass passes the gradient straight through to the shadow weights.
``scale='mean'`` uses the learned-free XNOR-Net alternative ``mean |w|`` per layer instead. Batch norm
stays full precision; ``keep`` names layers left full precision (by default the first and the last
conv/linear layer, which hold few weights and matter most).

``binarize(model)`` swaps the conv and linear layers of a built model in place; a model file or config
with ``model.params={binary: true}`` gets it for any registered model (``artifact.build_model``).

Storage (``pack_binary``/``unpack_binary``): the 1-bit layers as packed sign bits (``name::bits``,
uint8, eight weights per byte, LSB first along the flattened weight; counted in full, since a zero
byte holds eight weights rather than a pruned value) plus one float32 scale per layer
(``name::scale``); the layers kept full precision float16, batch norm float32.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tinyasc.compress.size import storage_tensors

# model.params keys that make a registered model 1-bit; the architecture's own builder never sees them
OPTIONS = ("binary", "binary_keep", "binary_scale")


class _SignSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, w):
        return torch.where(w >= 0, torch.ones_like(w), -torch.ones_like(w))

    @staticmethod
    def backward(ctx, grad):
        return grad  # straight through


def binary_weight(w: torch.Tensor, scale: str) -> torch.Tensor:
    if scale == "he":
        s = math.sqrt(2.0 / (w[0].numel()))
        return _SignSTE.apply(w) * s
    if scale == "mean":
        return _SignSTE.apply(w) * w.detach().abs().mean()
    raise ValueError(f"binary scale {scale!r}; expected 'he' or 'mean'")


class BinaryConv2d(nn.Conv2d):
    scale_mode = "he"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, binary_weight(self.weight, self.scale_mode), self.bias)


class BinaryLinear(nn.Linear):
    scale_mode = "he"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, binary_weight(self.weight, self.scale_mode), self.bias)


def binarize(model: nn.Module, keep: tuple[str, ...] | None = None, scale: str = "he") -> list[str]:
    """Make the conv/linear layers of ``model`` 1-bit in place; returns the binarized layer names.

    ``keep``: layer names left full precision; None = the first and the last conv/linear layer.
    """
    binary_weight(torch.ones(1, 1), scale)  # validates the scale mode
    # plain layers only (a subclass with its own forward, e.g. a damped kernel, would lose it), and those
    # that declare they compute what nn.Conv2d does (a faster path for the same convolution)
    layers = [
        (n, m)
        for n, m in model.named_modules()
        if type(m) in (nn.Conv2d, nn.Linear) or getattr(type(m), "same_as_conv2d", False)
    ]
    if not layers:
        raise ValueError("binarize: the model has no plain Conv2d or Linear layers")
    if keep is None:
        keep = (layers[0][0], layers[-1][0]) if len(layers) > 1 else ()
    unknown = set(keep) - {n for n, _ in layers}
    if unknown:
        raise ValueError(f"binarize: keep names {sorted(unknown)} are not conv or linear layers")
    done = []
    for name, m in layers:
        if name in keep:
            continue
        m.__class__ = BinaryConv2d if isinstance(m, nn.Conv2d) else BinaryLinear
        m.scale_mode = scale
        done.append(name)
    return done


def split_options(params: dict) -> tuple[dict, dict]:
    """``(architecture params, 1-bit options)`` of a ``model.params`` mapping."""
    return (
        {k: v for k, v in params.items() if k not in OPTIONS},
        {k: v for k, v in params.items() if k in OPTIONS},
    )


def apply_options(model: nn.Module, options: dict) -> nn.Module:
    """Binarize ``model`` in place when ``options`` (from ``split_options``) ask for it."""
    if options.get("binary", False):
        keep = options.get("binary_keep")
        model.binary_layers = binarize(
            model, tuple(keep) if keep is not None else None, options.get("binary_scale", "he")
        )
    return model


class BinaryPackError(ValueError):
    pass


def pack_binary(model: nn.Module) -> tuple[dict, dict]:
    """``(state, {"binary": layer info})`` of a 1-bit model: packed signs, scales, kept layers float16."""
    layers = [n for n, m in model.named_modules() if isinstance(m, BinaryConv2d | BinaryLinear)]
    if not layers:
        raise BinaryPackError(
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
    """The float state (signs times scale) of a packed 1-bit state."""
    out = {k: v for k, v in state.items() if "::" not in k}
    for name in info["layers"]:
        shape = info["shapes"][name]
        n = math.prod(shape)
        try:
            bits, scale = state[f"{name}.weight::bits"], state[f"{name}.weight::scale"]
        except KeyError as e:
            raise BinaryPackError(f"binary model file: tensor {e} of layer {name!r} is missing") from None
        signs = np.unpackbits(bits.numpy(), count=n, bitorder="little").astype(np.float32) * 2 - 1
        out[f"{name}.weight"] = torch.from_numpy(signs.reshape(shape)) * float(scale[0])
    return out
