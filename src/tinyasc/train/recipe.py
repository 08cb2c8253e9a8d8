"""The training-time recipe of one batch: spectrogram augmentation, targets, mixup and the loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tinyasc.augment.mixup import mixup
from tinyasc.augment.spectrogram import FreqMixStyle, FreqShift, SpecAugment
from tinyasc.config import AugmentConfig, ConfigError, TrainConfig
from tinyasc.train.objectives import make_loss, soft_targets


class BatchRecipe(nn.Module):
    """``loss = recipe(model, x, y)`` on a normalised batch; plain cross-entropy when nothing is on.

    Order: frequency shift, Freq-MixStyle, SpecAugment (each only in training mode), then soft targets
    (label smoothing), then mixup of inputs and targets, then the loss on the model's logits.
    """

    def __init__(self, aug: AugmentConfig, train: TrainConfig, n_classes: int):
        super().__init__()
        check_augment(aug, train)
        self.n_classes = n_classes
        stages: list[nn.Module] = []
        if aug.freq_shift > 0:
            stages.append(FreqShift(aug.freq_shift))
        if aug.mixstyle_p > 0:
            stages.append(FreqMixStyle(aug.mixstyle_p, aug.mixstyle_alpha))
        if aug.specaugment_freq_masks > 0 or aug.specaugment_time_masks > 0:
            stages.append(
                SpecAugment(
                    aug.specaugment_freq_masks,
                    aug.specaugment_freq_width,
                    aug.specaugment_time_masks,
                    aug.specaugment_time_width,
                )
            )
        self.augment = nn.Sequential(*stages)
        self.mixup_alpha = aug.mixup_alpha
        self.smoothing = train.label_smoothing
        self.plain = train.loss == "ce" and not self.smoothing and not self.mixup_alpha
        self.loss_fn = make_loss(train.loss, train.focal_gamma)

    def forward(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss, logits) of one training batch."""
        x = self.augment(x)
        if self.plain:
            logits = model(x)
            return F.cross_entropy(logits, y), logits
        targets = soft_targets(y, self.n_classes, self.smoothing)
        if self.mixup_alpha > 0 and self.training:
            x, targets = mixup(x, targets, self.mixup_alpha)
        logits = model(x)
        return self.loss_fn(logits, targets), logits


def check_augment(aug: AugmentConfig, train: TrainConfig) -> None:
    for key in (
        "specaugment_freq_masks",
        "specaugment_freq_width",
        "specaugment_time_masks",
        "specaugment_time_width",
        "freq_shift",
    ):
        if getattr(aug, key) < 0:
            raise ConfigError(f"augment.{key}={getattr(aug, key)}: expected >= 0")
    if not 0 <= aug.mixstyle_p <= 1:
        raise ConfigError(f"augment.mixstyle_p={aug.mixstyle_p}: expected a probability in [0, 1]")
    for key in ("mixstyle_alpha", "mixup_alpha"):
        if getattr(aug, key) < 0:
            raise ConfigError(f"augment.{key}={getattr(aug, key)}: expected >= 0")
    if aug.mixstyle_p > 0 and aug.mixstyle_alpha <= 0:
        raise ConfigError("augment.mixstyle_alpha must be > 0 when augment.mixstyle_p > 0")
    if train.loss not in ("ce", "focal"):
        raise ConfigError(f"train.loss: {train.loss!r}; expected 'ce' or 'focal'")
    if not 0 <= train.label_smoothing < 1:
        raise ConfigError(f"train.label_smoothing={train.label_smoothing}: expected a value in [0, 1)")
    if train.focal_gamma < 0:
        raise ConfigError(f"train.focal_gamma={train.focal_gamma}: expected >= 0")
