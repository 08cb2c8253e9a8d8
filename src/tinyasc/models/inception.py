"""Shallow inception network (Kim_KNU style).

Only a one-line description of the 2021 system is public (reference ``top_systems.md`` section 4:
"shallow inception", trained with a mean teacher; the mean teacher is a training option). Layout, our
choice and configurable: a 3x3 conv-BN-ReLU stem and 2x2 max pooling, then ``len(widths)`` inception
modules, each followed by 2x2 max pooling. A module has four parallel branches whose outputs are
concatenated: 1x1; 1x1 reduce then 3x3; 1x1 reduce then two 3x3 (a factorised 5x5, as Inception v2);
3x3 max pooling then 1x1. Every convolution is conv-BN-ReLU. Each branch gets a quarter of the module's
width and the reductions half of that. Head: 1x1 convolution to the classes, global average pooling.
"""

from __future__ import annotations

import torch
from torch import nn

from tinyasc.models.layers import FRONTEND_128, ASCModel, MaxPool2d, conv_bn, init_weights, register_variants


class InceptionModule(nn.Module):
    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        if c_out % 4:
            raise ValueError(f"inception module width {c_out} is not divisible by 4 branches")
        b = c_out // 4
        r = max(b // 2, 1)
        self.b1 = conv_bn(c_in, b, 1)
        self.b3 = nn.Sequential(conv_bn(c_in, r, 1), conv_bn(r, b, 3))
        self.b5 = nn.Sequential(conv_bn(c_in, r, 1), conv_bn(r, b, 3), conv_bn(b, b, 3))
        self.bp = nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1), conv_bn(c_in, b, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b1(x), self.b3(x), self.b5(x), self.bp(x)], dim=1)


class ShallowInception(ASCModel):
    bfloat16_training = True  # 1.09x faster than float32 per core (channels_last; train_speed.py)

    def __init__(
        self,
        n_classes: int = 10,
        stem: int = 24,
        widths: tuple = (48, 96, 128),
        dropout: float = 0.2,
        n_mels: int = 128,
        frames: int = 431,
    ):
        super().__init__(n_mels, frames, f"shallow_inception widths={tuple(widths)}")
        layers: list[nn.Module] = [conv_bn(1, stem, 3), MaxPool2d(2)]
        channels = stem
        for w in widths:
            layers += [InceptionModule(channels, w), MaxPool2d(2)]
            channels = w
        self.features = nn.Sequential(*layers)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Conv2d(channels, n_classes, 1)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check(x)
        return self.head(self.drop(self.features(x))).mean(dim=(2, 3))


register_variants(
    ShallowInception,
    {
        "inception_s": (dict(), "float16", "budget"),
        "inception_l": (dict(stem=48, widths=(128, 256, 384)), "float32", "teacher"),
    },
    FRONTEND_128,
    "shallow inception (Kim_KNU style)",
)
