"""The official DCASE 2021 Task 1A baseline CNN (reference section 1.2), in PyTorch.

Keras original (marmoi/dcase2021_task1a_baseline, task1a.yaml): three Conv2D(7x7, same) layers with
batch norm and ReLU, max pooling (5,5) then (4,100), dropout 0.3, Dense(100, relu), Dense(10).
46,246 parameters counted as Keras counts them (BN gamma, beta, moving mean and variance included).
Keras BatchNormalization defaults: momentum 0.99 (PyTorch momentum 0.01), epsilon 1e-3.
Initialisation: glorot_uniform for the convolutions, RandomUniform(+-0.05) for the dense layers,
zero biases. The softmax of the Keras output layer is applied in the loss and at prediction.
"""

from __future__ import annotations

import torch
from torch import nn

from tinyasc.models.layers import scale_widths
from tinyasc.models.registry import check_input, register_model


class BaselineCNN(nn.Module):
    # Trains 1.19x faster with channels_last tensors on the project's CPU (benchmarks/train_speed.py).
    channels_last = True
    bfloat16_training = True  # 2.14x faster than float32 per core (channels_last; train_speed.py)

    def __init__(
        self,
        n_classes: int = 10,
        n_mels: int = 40,
        frames: int = 500,
        filters: tuple = (16, 16, 32),
        kernel: int = 7,
        dense: int = 100,
        dropout: float = 0.3,
    ):
        super().__init__()
        self.n_mels, self.frames = n_mels, frames
        f1, f2, f3 = filters
        pad = kernel // 2
        bn = dict(eps=1e-3, momentum=0.01)
        self.conv1 = nn.Conv2d(1, f1, kernel, padding=pad)
        self.bn1 = nn.BatchNorm2d(f1, **bn)
        self.conv2 = nn.Conv2d(f1, f2, kernel, padding=pad)
        self.bn2 = nn.BatchNorm2d(f2, **bn)
        self.pool1 = nn.MaxPool2d((5, 5))
        self.conv3 = nn.Conv2d(f2, f3, kernel, padding=pad)
        self.bn3 = nn.BatchNorm2d(f3, **bn)
        if frames < 5 or n_mels < 20:
            raise ValueError(
                f"the baseline needs at least 20 mel bands and 5 frames, got {n_mels} x {frames}"
            )
        # The second pooling spans the whole time axis left after the first: (4, 100) at the official
        # 500 frames, (4, frames // 5) for other clip lengths, so the dense layers keep their size.
        self.pool2 = nn.MaxPool2d((4, frames // 5))
        self.drop = nn.Dropout(dropout)
        flat = f3 * (n_mels // 5 // 4)
        self.dense1 = nn.Linear(flat, dense)
        self.dense2 = nn.Linear(dense, n_classes)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for conv in (self.conv1, self.conv2, self.conv3):
            nn.init.xavier_uniform_(conv.weight)
            nn.init.zeros_(conv.bias)
        for lin in (self.dense1, self.dense2):
            nn.init.uniform_(lin.weight, -0.05, 0.05)
            nn.init.zeros_(lin.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, 1, n_mels, frames) normalised log-mel -> logits (B, n_classes)."""
        check_input(x, self.n_mels, self.frames, "dcase2021_baseline")
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x)))
        x = self.drop(self.pool1(x))
        x = torch.relu(self.bn3(self.conv3(x)))
        x = self.drop(self.pool2(x))
        x = torch.relu(self.dense1(x.flatten(1)))
        return self.dense2(self.drop(x))


@register_model(
    "dcase2021_baseline",
    n_mels=40,
    frames=500,
    description="DCASE 2021 Task 1A baseline CNN (the reference point)",
    family="BaselineCNN",
    role="reference",
    scale=lambda s: scale_widths(BaselineCNN, {}, s),
)
def dcase2021_baseline(n_classes: int = 10, **params) -> nn.Module:
    return BaselineCNN(n_classes=n_classes, **params)
