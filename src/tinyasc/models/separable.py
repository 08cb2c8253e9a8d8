"""Separable CNN (Puy_VAI style): a VGG-like stack of depthwise-separable convolutions.

Only a one-line description of the 2021 system is public (reference ``top_systems.md`` section 4:
"separable CNN + focal loss"; focal loss is a training option). Layout, our choice and configurable: a
3x3 conv-BN-ReLU stem, then per stage two separable convolutions (3x3 depthwise, 1x1 pointwise, BN,
ReLU) followed by 2x2 max pooling and dropout, widths ``widths``; a 1x1 convolution to the classes and
global average pooling.
"""

from __future__ import annotations

import torch
from torch import nn

from tinyasc.models.layers import FRONTEND_128, ASCModel, MaxPool2d, conv_bn, init_weights, register_variants


class SeparableConv(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, kernel: int = 3):
        super().__init__(
            nn.Conv2d(c_in, c_in, kernel, padding=kernel // 2, groups=c_in, bias=False),
            nn.Conv2d(c_in, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(),
        )


class SeparableCNN(ASCModel):
    bfloat16_training = True  # 1.33x faster than float32 per core (channels_last; train_speed.py)

    def __init__(
        self,
        n_classes: int = 10,
        stem: int = 16,
        widths: tuple = (32, 64, 128),
        per_stage: int = 2,
        dropout: float = 0.2,
        n_mels: int = 128,
        frames: int = 431,
    ):
        super().__init__(n_mels, frames, f"separable_cnn widths={tuple(widths)}")
        layers: list[nn.Module] = [conv_bn(1, stem, 3), MaxPool2d(2)]
        channels = stem
        for w in widths:
            for _ in range(per_stage):
                layers.append(SeparableConv(channels, w))
                channels = w
            layers += [MaxPool2d(2), nn.Dropout(dropout)]
        self.features = nn.Sequential(*layers)
        self.head = nn.Conv2d(channels, n_classes, 1)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check(x)
        return self.head(self.features(x)).mean(dim=(2, 3))


register_variants(
    SeparableCNN,
    {
        "separable_cnn_s": (dict(), "float16", "budget"),
        "separable_cnn_l": (dict(stem=32, widths=(64, 128, 256, 256)), "float32", "teacher"),
    },
    FRONTEND_128,
    "separable CNN (Puy_VAI style)",
)
