"""Compact ResNet (Heo_Clova, Liu_UESTC style) and the Trident multi-branch ResNet (Jeong_ETRI style).

Neither team's code or report is public (reference ``top_systems.md`` section 4), so both follow the
standard design their descriptions name, with every detail a parameter:

**ResNet**: a 3x3 conv-BN-ReLU stem and 2x2 max pooling, then stages of basic residual blocks (two 3x3
conv-BN, ReLU after the sum; 1x1 conv-BN shortcut where the shape changes) with widths ``widths`` and
``blocks`` per stage, stride 2 in the first block of every stage after the first; global average
pooling and a linear classifier. Choices: post-activation blocks (as He et al. 2016a), the pooling after
the stem (keeps the cost of the first stage near the baseline's), no max-feature-map activations.

**Trident ResNet**: the log-mel is split along frequency into ``len(bands)`` sub-bands (default three
equal ones: low, middle, high) and every band has its own small ResNet branch (the same stem and stages
with its own weights); the branches' pooled features are concatenated and a linear layer classifies
them. The original Trident ResNet of ETRI (Suh et al. 2020) is recalled, not verified, as a ResNet with
branches per frequency range; the equal split and the branch layout are our choices.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tinyasc.models.layers import (
    FRONTEND_128,
    ASCModel,
    MaxPool2d,
    conv_bn,
    init_weights,
    plain_conv2d,
    register_variants,
)


class StridedPointwise(nn.Conv2d):
    """A 1x1 convolution with a stride, computed as the stride-1 convolution of the subsampled input
    ``x[:, :, ::sf, ::st]``: the same outputs, weights and parameter names. The plain form's weight
    gradient crashed the process (segmentation fault in oneDNN, torch 2.13 CPU) for channels_last
    tensors of 8 or 12 channels with an even time axis: resnet_c12 on 5-s clips
    (``tests/test_zoo.py``). Graph quantisation gets the plain strided convolution back."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sf, st = self.stride
        if (sf, st) == (1, 1):
            return super().forward(x)
        return F.conv2d(x[:, :, ::sf, ::st], self.weight, self.bias, 1, 0, self.dilation, self.groups)

    def for_quantization(self) -> nn.Conv2d:
        return plain_conv2d(self)


class ResBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = (
            nn.Sequential(StridedPointwise(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))
            if stride != 1 or c_in != c_out
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


def resnet_trunk(widths: tuple, blocks: tuple) -> tuple[nn.Sequential, int]:
    """Stem + stages; returns the trunk and its output channels."""
    if len(widths) != len(blocks):
        raise ValueError(f"ResNet: widths {widths} and blocks {blocks} need the same number of stages")
    layers: list[nn.Module] = [conv_bn(1, widths[0], 3), MaxPool2d(2)]
    channels = widths[0]
    for stage, (w, n) in enumerate(zip(widths, blocks, strict=True)):
        for b in range(n):
            layers.append(ResBlock(channels, w, 2 if stage > 0 and b == 0 else 1))
            channels = w
    return nn.Sequential(*layers), channels


class ResNet(ASCModel):
    bfloat16_training = True  # 1.37x faster than float32 per core (channels_last; train_speed.py)

    def __init__(
        self,
        n_classes: int = 10,
        widths: tuple = (16, 32, 64),
        blocks: tuple = (1, 1, 1),
        dropout: float = 0.2,
        n_mels: int = 128,
        frames: int = 431,
    ):
        super().__init__(n_mels, frames, f"resnet widths={tuple(widths)}")
        self.trunk, channels = resnet_trunk(tuple(widths), tuple(blocks))
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(channels, n_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check(x)
        return self.fc(self.drop(self.trunk(x).mean(dim=(2, 3))))


class TridentResNet(ASCModel):
    bfloat16_training = True  # 1.23x faster than float32 per core (channels_last; train_speed.py)

    def __init__(
        self,
        n_classes: int = 10,
        bands: tuple | None = None,
        widths: tuple = (12, 24, 48),
        blocks: tuple = (1, 1, 1),
        dropout: float = 0.2,
        n_mels: int = 128,
        frames: int = 431,
    ):
        super().__init__(n_mels, frames, f"trident_resnet widths={tuple(widths)}")
        if bands is None:
            third = n_mels // 3
            bands = (third, third, n_mels - 2 * third)
        if sum(bands) != n_mels or min(bands) < 4:
            raise ValueError(
                f"Trident ResNet: bands {tuple(bands)} must be >= 4 bins each and sum to {n_mels}"
            )
        self.bands = tuple(bands)
        edges = [0]
        for b in self.bands:
            edges.append(edges[-1] + b)
        self.spans = tuple(zip(edges[:-1], edges[1:], strict=True))  # plain ints: traceable by FX
        branches, channels = [], 0
        for _ in self.bands:
            trunk, c = resnet_trunk(tuple(widths), tuple(blocks))
            branches.append(trunk)
            channels += c
        self.branches = nn.ModuleList(branches)
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(channels, n_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check(x)
        feats = [
            branch(x[:, :, lo:hi]).mean(dim=(2, 3))
            for branch, (lo, hi) in zip(self.branches, self.spans, strict=True)
        ]
        return self.fc(self.drop(torch.cat(feats, dim=1)))


register_variants(
    ResNet,
    {
        "resnet_c12": (dict(widths=(12, 24, 48), blocks=(1, 1, 1)), "float16", "budget"),
        "resnet_c16": (dict(widths=(16, 32, 64), blocks=(1, 1, 1)), "int8", "budget"),
        "resnet_c64": (dict(widths=(64, 128, 256), blocks=(2, 2, 2)), "float32", "teacher"),
    },
    FRONTEND_128,
    "compact ResNet (Heo_Clova, Liu_UESTC style)",
)

register_variants(
    TridentResNet,
    {
        "trident_resnet_c8": (dict(widths=(8, 16, 32), blocks=(1, 1, 1)), "float16", "budget"),
        "trident_resnet_c32": (dict(widths=(32, 64, 128), blocks=(2, 2, 2)), "float32", "teacher"),
    },
    FRONTEND_128,
    "Trident ResNet (Jeong_ETRI style), one ResNet branch per frequency band",
)
