"""CP-ResNet (Koutini et al., CP-JKU; DCASE 2019-2021): a receptive-field-regularised ResNet.

Follows reference ``top_systems.md`` section 3 (kkoutini/cpjku_dcase20, CPJKU/cpjku_dcase22), written anew:

- input block: 5x5 convolution, stride 2, BN, ReLU to ``width`` channels;
- three stages of basic residual blocks (conv-BN-ReLU-conv-BN, 1x1 conv-BN shortcut where the width
  changes, ReLU after the sum) at ``width``, ``2 width`` and ``4 width`` channels, ``blocks`` per stage;
  2x2 max pooling after the blocks listed in ``pool_after`` (first stage, as the original configs);
- head: 1x1 convolution to the classes, BN, global average pooling (no dense layer).

**Receptive-field regularisation** (``rho``): the original maps rho to hand-written per-stage kernel lists
(3x3 in early blocks, 1x1 later). Here the rule is explicit and monotone: the block convolutions are
numbered 1, 2, ... in order (two per block) and the first ``rho`` of them are 3x3, the rest 1x1, so a
smaller rho means a smaller receptive field. **Frequency damping** (``damped=True``, ``Conv2dDamped`` of
cp_resnet_freq_damp): each kernel is multiplied by a fixed mask that falls linearly along the frequency
axis from 1 at the centre row to 0.01 at the edge rows (time axis undamped); the mask is not a stored
parameter. **Grouping**: ``groups`` gives the group count of the 3x3 convolutions per stage (the 2022
submissions used 2 in the second stage).

Choices where the sources leave details open, all configurable: BN after the 1x1 head as in the
original; He initialisation (the original's Fixup-style option is not implemented); pooling after the
first and second block of stage 1.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tinyasc.models.layers import (
    FRONTEND_CP,
    ASCModel,
    MaxPool2d,
    init_weights,
    plain_conv2d,
    register_variants,
)


class Conv2dDamped(nn.Conv2d):
    """Conv2d whose kernel is damped linearly along frequency: 1 at the centre row, 0.01 at the edges."""

    def __init__(self, *args, min_gain: float = 0.01, **kwargs):
        super().__init__(*args, **kwargs)
        kf = self.kernel_size[0]
        half = kf // 2
        if half == 0:
            rows = torch.ones(1)
        else:
            rows = 1 - (1 - min_gain) * torch.arange(-half, half + 1).abs().float() / half
        self.register_buffer("damping", rows.reshape(1, 1, kf, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.weight * self.damping, self.bias)

    def for_quantization(self) -> nn.Conv2d:
        """The plain convolution with the damped kernel, which graph quantisation turns into an int8
        conv (the damping is a fixed mask, so inference is unchanged)."""
        return plain_conv2d(self, self.weight * self.damping)


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, k1: int, k2: int, groups: int, damped: bool):
        super().__init__()
        conv = Conv2dDamped if damped else nn.Conv2d

        def make(ci, co, k):
            g = groups if k > 1 and ci % groups == 0 and co % groups == 0 else 1
            return conv(ci, co, k, padding=k // 2, groups=g, bias=False)

        self.conv1 = make(c_in, c_out, k1)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = make(c_out, c_out, k2)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = (
            nn.Sequential(nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out))
            if c_in != c_out
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CPResNet(ASCModel):
    bfloat16_training = True  # 1.62x faster than float32 per core (channels_last; train_speed.py)

    def __init__(
        self,
        n_classes: int = 10,
        width: int = 32,
        blocks: tuple = (3, 1, 1),
        rho: int = 7,
        damped: bool = False,
        groups: tuple = (1, 1, 1),
        pool_after: tuple = (1, 2),
        n_mels: int = 256,
        frames: int = 431,
    ):
        super().__init__(n_mels, frames, f"cpresnet width={width} rho={rho}")
        if len(blocks) != 3 or len(groups) != 3:
            raise ValueError(f"CP-ResNet: blocks and groups need 3 stages each, got {blocks} and {groups}")
        self.rho = rho
        self.in_c = nn.Sequential(
            nn.Conv2d(1, width, 5, stride=2, padding=2, bias=False), nn.BatchNorm2d(width), nn.ReLU()
        )
        layers: list[nn.Module] = []
        channels, conv_index = width, 0
        self.kernels: list[int] = []
        for stage, (n, g) in enumerate(zip(blocks, groups, strict=True)):
            out = width * 2**stage
            for b in range(n):
                k1 = 3 if conv_index + 1 <= rho else 1
                k2 = 3 if conv_index + 2 <= rho else 1
                conv_index += 2
                self.kernels += [k1, k2]
                layers.append(BasicBlock(channels, out, k1, k2, g, damped))
                channels = out
                if stage == 0 and b + 1 in pool_after:
                    layers.append(MaxPool2d(2))
        self.stages = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Conv2d(channels, n_classes, 1, bias=False), nn.BatchNorm2d(n_classes))
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check(x)
        return self.head(self.stages(self.in_c(x))).mean(dim=(2, 3))


register_variants(
    CPResNet,
    {
        # 3 stages of (3, 1, 1) blocks at 20 / 40 / 80 channels, the second stage grouped by 2: fits at
        # float16 (CP-JKU shipped float16 in 2021).
        "cpresnet_c20": (dict(width=20, blocks=(3, 1, 1), rho=7, groups=(1, 2, 2)), "float16", "budget"),
        # the same with frequency-damped kernels
        "cpresnet_c20_damped": (
            dict(width=20, blocks=(3, 1, 1), rho=7, groups=(1, 2, 2), damped=True),
            "float16",
            "budget",
        ),
        # twice as wide (344,560 bytes at float16): fits after pruning about 70% of its weights
        "cpresnet_c40": (dict(width=40, blocks=(3, 1, 1), rho=7, groups=(1, 2, 2)), "float16", "prune"),
        # larger, ungrouped: a teacher
        "cpresnet_c64": (dict(width=64, blocks=(4, 1, 2), rho=9), "float32", "teacher"),
    },
    FRONTEND_CP,
    "CP-ResNet (Koutini_CPJKU), receptive field set by rho",
)
