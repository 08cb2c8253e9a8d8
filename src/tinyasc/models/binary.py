"""1-bit weights for any model: sign times a per-layer scale, trained with a straight-through estimator.

The recipe of McDonnell (ICLR 2018; DCASE 2020 Task 1b, the closest documented relative of Liu_UESTC's
42.5 KB system, reference ``top_systems.md`` 4): full-precision shadow weights are kept and trained; the
forward pass uses ``sign(w) * scale`` with the fixed per-layer scale ``sqrt(2 / fan_in)`` (He's
standard deviation), the backward pass passes the gradient straight through to the shadow weights.
``scale='mean'`` uses the learned-free XNOR-Net alternative ``mean |w|`` per layer instead. Batch norm
stays full precision; ``keep`` names layers left full precision (by default the first and the last
conv/linear layer, which hold few weights and matter most).

``binarize(model)`` swaps the conv and linear layers of a built model in place; ``create_model(name,
binary=True)`` does it for any registered model. The size of a binarized model at 1 bit per weight is
counted by the compression step that packs the signs.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


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
    layers = [(n, m) for n, m in model.named_modules() if type(m) in (nn.Conv2d, nn.Linear)]
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
