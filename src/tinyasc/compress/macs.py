"""Multiply-accumulate operations (MACs) of one forward pass, counted with forward hooks.

The one method, stated: a forward pass on one zero clip of the shape the model declares, with hooks on
every ``Conv1d``, ``Conv2d`` and ``Linear`` layer. A convolution costs
``output elements x (input channels / groups) x kernel height x kernel width`` MACs (the formula of the
DCASE 2024 baseline README and of torchinfo's ``mult_adds``); a linear layer costs
``output elements x input features``. Biases, batch norm, activations, pooling, ResNorm, the
squeeze-and-excitation products and the residual sums are not counted (they are a few per element, small
next to the convolutions, and the DCASE tools treat them differently). The frontend (STFT and mel
filterbank) is not part of the model and not counted.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from tinyasc.compress.size import example_input, traced_pass


@dataclass
class MacReport:
    total: int
    layers: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"macs": self.total, "layers": self.layers}


def layer_macs(module: nn.Module, output: torch.Tensor) -> int:
    per_clip = output[0].numel()  # batch of one
    if isinstance(module, nn.Conv1d | nn.Conv2d):
        k = 1
        for d in module.kernel_size:
            k *= d
        return per_clip * (module.in_channels // module.groups) * k
    if isinstance(module, nn.Linear):
        return per_clip * module.in_features
    raise TypeError(f"no MAC rule for {type(module).__name__}")


@torch.no_grad()
def count_macs(model: nn.Module, x: torch.Tensor | None = None) -> MacReport:
    """MACs of one clip (a batch of one) through ``model``; layers called twice are counted twice."""
    x = example_input(model) if x is None else x
    if x.shape[0] != 1:
        raise ValueError(f"count_macs: expected a batch of one clip, got {tuple(x.shape)}")
    layers: dict[str, int] = {}
    hooks = []

    def make(name):
        def hook(module, inputs, output):
            layers[name] = layers.get(name, 0) + layer_macs(module, output)

        return hook

    for name, m in model.named_modules():
        if isinstance(m, nn.Conv1d | nn.Conv2d | nn.Linear):
            hooks.append(m.register_forward_hook(make(name)))
    traced_pass(model, x, hooks)
    return MacReport(sum(layers.values()), layers)
