"""CP-Mobile-style network of the DCASE 2024 and 2025 Task 1 baselines (1-s clips).

The architecture as the 2024 baseline README and the paper describe it (Schmid et al., arXiv 2405.10018;
CPJKU/dcase2024_task1_baseline): a stem of two 3x3 conv-BN-ReLU layers with stride 2 (to a quarter of the
base width, then the base width); three stages of inverted-bottleneck blocks (1x1 expansion, 3x3
depthwise with the block's stride, linear 1x1 projection, each with batch norm; an identity shortcut, or a
3x3 average pool for a strided one, when the width is kept; ReLU after the sum); the stage widths
``base x multiplier^stage`` rounded to multiples of 8; a 1x1 conv to the classes, batch norm and global
average pooling as the classifier (no linear layer). Strides: block 3 halves time, block 4 halves
frequency. With base 32, multiplier 1.8, expansion 2.1 and (3, 2, 1) blocks it has the 2024 baseline's
61,148 parameters and 29,419,156 MACs for its 256 x 65 input (tests/test_rules.py checks both).

Frontend of the baseline: 32 kHz, 4096-point FFT, 3072-sample Hann window, hop 500 (65 frames per
second), 256 HTK mel bands, power spectrum, ``log(mel + 1e-5)``.
"""

from __future__ import annotations

import torch
from torch import nn

from tinyasc.models.layers import ASCModel, conv_bn, init_weights, register_variants

FRONTEND_CPM = dict(
    sample_rate=32000,
    duration=1.0,
    n_fft=4096,
    win_length=3072,
    hop_length=500,
    window="hann",
    power=2.0,
    n_mels=256,
    fmax=None,
    htk=True,
    mel_norm=None,
    log_eps=1e-5,
    trim_frames=0,
)


def round8(v: float) -> int:
    """The nearest multiple of 8, at least 8, never more than 10% below ``v`` (MobileNet's rounding)."""
    r = max(8, int(v + 4) // 8 * 8)
    return r + 8 if r < 0.9 * v else r


class CPMobileBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, expansion: float, stride: tuple[int, int]):
        super().__init__()
        hidden = round8(c_in * expansion)
        self.block = nn.Sequential(
            conv_bn(c_in, hidden, 1),
            conv_bn(hidden, hidden, 3, stride=stride, groups=hidden),
            conv_bn(hidden, c_out, 1, act=None),
        )
        self.shortcut: nn.Module | None = None
        if c_in == c_out:
            strided = tuple(stride) != (1, 1)
            self.shortcut = nn.AvgPool2d(3, stride=stride, padding=1) if strided else nn.Identity()
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        if self.shortcut is not None:
            out = out + self.shortcut(x)
        return self.act(out)


class CPMobile(ASCModel):
    # 1.19x faster than float32 per core (channels_last) with its strided depthwise convolutions in
    # float32 (train.loop.DepthwiseInFloat32); 0.89x before.
    bfloat16_training = True

    def __init__(
        self,
        n_classes: int = 10,
        base: int = 32,
        multiplier: float = 1.8,
        expansion: float = 2.1,
        blocks: tuple[int, ...] = (3, 2, 1),
        strides: dict | None = None,  # {block number (1-based): (freq, time)}; default blocks 3 and 4
        n_mels: int = 256,
        frames: int = 65,
    ):
        super().__init__(n_mels, frames, f"cpmobile base={base}")
        strides = (
            {3: (1, 2), 4: (2, 1)} if strides is None else {int(k): tuple(v) for k, v in strides.items()}
        )
        widths = [round8(base)] + [round8(round8(base) * multiplier**s) for s in range(len(blocks))]
        self.stem = nn.Sequential(
            conv_bn(1, widths[0] // 4, 3, stride=2), conv_bn(widths[0] // 4, widths[0], 3, stride=2)
        )
        layers: list[nn.Module] = []
        c, number = widths[0], 0
        for stage, n in enumerate(blocks):
            for _ in range(n):
                number += 1
                layers.append(CPMobileBlock(c, widths[stage + 1], expansion, strides.get(number, (1, 1))))
                c = widths[stage + 1]
        self.stages = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Conv2d(c, n_classes, 1, bias=False), nn.BatchNorm2d(n_classes))
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check(x)
        return self.classifier(self.stages(self.stem(x))).mean(dim=(2, 3))


register_variants(
    CPMobile,
    {
        "cpmobile_dcase2024": (dict(), "float16-all", "budget"),
        # a wider network of the same design, as a teacher for distillation (no size limit)
        "cpmobile_l": (dict(base=48, multiplier=2.0, expansion=3.0, blocks=(3, 2, 2)), "float32", "teacher"),
    },
    FRONTEND_CPM,
    "CP-Mobile-style inverted bottlenecks of the DCASE 2024/2025 baselines, 1-s clips",
)
