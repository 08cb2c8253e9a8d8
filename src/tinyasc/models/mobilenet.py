"""MobileNetV2-style inverted residuals and an EfficientNet-style variant (Verbitskiy).

No code of the 2021 teams is public (reference ``top_systems.md`` section 4); both follow the published
architectures (Sandler et al. 2018; Tan and Le 2019) scaled down to the budget:

**MobileNetV2**: 3x3 conv-BN-ReLU6 stem with stride 2; inverted residual blocks (1x1 expansion by ``t``
with BN + ReLU6, 3x3 depthwise conv with stride, BN + ReLU6, linear 1x1 projection with BN; identity
shortcut when the shape is kept); a 1x1 conv-BN-ReLU6 to ``last`` channels; global average pooling;
dropout; linear classifier. ``setting`` lists (t, channels, repeats, stride) per stage.

**EfficientNet-style**: MBConv blocks (expansion, depthwise k x k, squeeze-and-excitation with ratio
0.25 of the block input width, SiLU, linear projection) with kernels 3 or 5 per stage, the same stem and
head with SiLU. Width and depth are set per stage explicitly rather than by the compound-scaling
formula (our choice: the formula's round-ups overshoot a 128 KB budget). Stochastic depth is left out.
"""

from __future__ import annotations

import torch
from torch import nn

from tinyasc.models.layers import FRONTEND_128, ASCModel, conv_bn, init_weights, register_variants


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int, squeezed: int):
        super().__init__()
        self.reduce = nn.Conv2d(channels, squeezed, 1)
        self.expand = nn.Conv2d(squeezed, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean(dim=(2, 3), keepdim=True)
        return x * torch.sigmoid(self.expand(nn.functional.silu(self.reduce(s))))


class InvertedResidual(nn.Module):
    def __init__(
        self, c_in: int, c_out: int, stride: int, t: int, kernel: int = 3, se: float = 0.0, act=nn.ReLU6
    ):
        super().__init__()
        hidden = c_in * t
        layers: list[nn.Module] = []
        if t != 1:
            layers.append(conv_bn(c_in, hidden, 1, act=act))
        layers.append(conv_bn(hidden, hidden, kernel, stride=stride, groups=hidden, act=act))
        if se > 0:
            layers.append(SqueezeExcite(hidden, max(1, int(c_in * se))))
        layers.append(conv_bn(hidden, c_out, 1, act=None))
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return out + x if self.residual else out


class MobileNetV2(ASCModel):
    # 1.18x faster than float32 per core (channels_last), EfficientNet 1.12x, once the strided and 5x5
    # depthwise convolutions run in float32 (train.loop.DepthwiseInFloat32); 0.93x / 0.75x before.
    bfloat16_training = True

    def __init__(
        self,
        n_classes: int = 10,
        stem: int = 16,
        setting: tuple = ((1, 16, 1, 1), (4, 24, 2, 2), (4, 32, 3, 2), (4, 48, 1, 2)),
        last: int = 64,
        dropout: float = 0.2,
        n_mels: int = 128,
        frames: int = 431,
        se: float = 0.0,
        kernels: tuple | None = None,
        act: str = "relu6",
    ):
        super().__init__(n_mels, frames, f"{type(self).__name__.lower()} stem={stem}")
        activation = {"relu6": nn.ReLU6, "silu": nn.SiLU}[act]
        kernels = kernels or (3,) * len(setting)
        if len(kernels) != len(setting):
            raise ValueError(f"{len(kernels)} kernels for {len(setting)} stages")
        layers: list[nn.Module] = [conv_bn(1, stem, 3, stride=2, act=activation)]
        channels = stem
        for (t, c, n, s), k in zip(setting, kernels, strict=True):
            for i in range(n):
                layers.append(InvertedResidual(channels, c, s if i == 0 else 1, t, k, se, activation))
                channels = c
        layers.append(conv_bn(channels, last, 1, act=activation))
        self.features = nn.Sequential(*layers)
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(last, n_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check(x)
        return self.fc(self.drop(self.features(x).mean(dim=(2, 3))))


class EfficientNet(MobileNetV2):
    """MBConv (expansion, depthwise 3 or 5, squeeze-and-excitation, SiLU) network."""

    def __init__(
        self,
        n_classes: int = 10,
        stem: int = 16,
        setting: tuple = ((1, 16, 1, 1), (4, 24, 2, 2), (4, 32, 2, 2), (4, 48, 1, 2)),
        kernels: tuple = (3, 3, 5, 3),
        last: int = 96,
        dropout: float = 0.2,
        n_mels: int = 128,
        frames: int = 431,
        se: float = 0.25,
    ):
        super().__init__(n_classes, stem, setting, last, dropout, n_mels, frames, se, kernels, "silu")


register_variants(
    MobileNetV2,
    {
        "mobilenetv2_s": (dict(), "float16", "budget"),
        "mobilenetv2_l": (
            dict(stem=32, setting=((1, 16, 1, 1), (6, 32, 2, 2), (6, 64, 3, 2), (6, 96, 2, 2)), last=512),
            "float32",
            "teacher",
        ),
    },
    FRONTEND_128,
    "MobileNetV2-style inverted residuals",
)

register_variants(
    EfficientNet,
    {
        "efficientnet_s": (dict(), "float16", "budget"),
        "efficientnet_l": (
            dict(
                stem=32,
                setting=((1, 16, 1, 1), (6, 32, 2, 2), (6, 48, 2, 2), (6, 96, 3, 2), (6, 128, 1, 1)),
                kernels=(3, 3, 5, 3, 5),
                last=512,
            ),
            "float32",
            "teacher",
        ),
    },
    FRONTEND_128,
    "EfficientNet-style MBConv with squeeze-and-excitation (Verbitskiy)",
)
