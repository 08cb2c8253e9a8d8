"""The training-time recipe of one batch: spectrogram augmentation, targets, mixup and the loss."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from tinyasc.augment.mixup import mixup
from tinyasc.augment.spectrogram import FreqMixStyle, FreqShift, SpecAugment
from tinyasc.augment.waveform import DeviceIR, Gain, TimeRoll, load_irs, procedural_irs
from tinyasc.config import AugmentConfig, ConfigError, FrontendConfig, TrainConfig
from tinyasc.frontend import LogMel
from tinyasc.train.objectives import consistency_loss, distillation_loss, make_loss, soft_targets


class BatchRecipe(nn.Module):
    """``loss = recipe(model, x, y)`` on a normalised batch; plain cross-entropy when nothing is on.

    Order: device translation (device-A clips), frequency shift, Freq-MixStyle, SpecAugment (each only in training mode), then soft targets
    (label smoothing) and the teacher's tempered distribution, then mixup of inputs and both targets, then
    the loss: ``(1 - w) * classification + w * T^2 KL(teacher || student)`` with stored teacher logits,
    plus ``weight * MSE(softmax(student), softmax(mean teacher))`` with a mean teacher.
    """

    def __init__(
        self,
        aug: AugmentConfig,
        train: TrainConfig,
        n_classes: int,
        student: nn.Module | None = None,
        frontend: FrontendConfig | None = None,
    ):
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
        self.kd_weight, self.kd_temperature = train.kd_weight, train.kd_temperature
        self.mt_weight, self.mt_decay = train.mean_teacher_weight, train.mean_teacher_decay
        self.ema: nn.Module | None = None
        self.translate: nn.Module | None = None
        self.logmel: nn.Module | None = None  # set when training reads waveforms
        if aug.waveform:
            if frontend is None:
                raise ValueError("waveform augmentation needs the frontend config")
            self.roll = TimeRoll(int(round(aug.roll_max_seconds * frontend.sample_rate)))
            self.gain = Gain(aug.gain_db)
            self.dir: nn.Module | None = None
            if aug.dir_p > 0:
                irs = (
                    load_irs(aug.dir_path, frontend.sample_rate)
                    if aug.dir_path
                    else procedural_irs(aug.dir_count, frontend.sample_rate, seed=aug.dir_seed)
                )
                self.dir = DeviceIR(irs, aug.dir_p)
            self.logmel = LogMel(frontend)
        if train.mean_teacher_weight > 0:
            if student is None:
                raise ValueError("a mean teacher needs the student model")
            self.ema = copy.deepcopy(student).eval()
            for p in self.ema.parameters():
                p.requires_grad_(False)

    def features(self, wave: torch.Tensor, is_reference: torch.Tensor | None = None) -> torch.Tensor:
        """Waveform batch (B, samples) -> augmented log-mel (B, 1, n_mels, frames), not normalised.

        Order: device impulse response (device-A clips), time roll, gain, then the frontend."""
        if self.dir is not None:
            ref = is_reference if is_reference is not None else torch.ones(len(wave), dtype=torch.bool)
            wave = self.dir(wave, ref)
        return self.logmel(self.gain(self.roll(wave)))

    def set_device_translation(self, module: nn.Module) -> None:
        self.translate = module

    def train(self, mode: bool = True):
        super().train(mode)
        if self.ema is not None:
            self.ema.eval()  # the teacher always predicts in eval mode (running BN statistics, no dropout)
        return self

    def forward(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        teacher: torch.Tensor | None = None,
        is_reference: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss, logits) of one training batch; ``teacher``: stored teacher logits of these clips;
        ``is_reference``: which clips are device-A recordings (for device translation)."""
        if self.translate is not None and is_reference is not None:
            x = self.translate(x, is_reference)
        x = self.augment(x)
        if self.plain and teacher is None and self.ema is None:
            logits = model(x)
            return F.cross_entropy(logits, y), logits
        targets = soft_targets(y, self.n_classes, self.smoothing)
        parts = [targets]
        if teacher is not None:
            parts.append(F.softmax(teacher.float() / self.kd_temperature, dim=1))
        if self.mixup_alpha > 0 and self.training:
            # one mixing of the inputs, the labels and the teacher's distribution alike
            x, mixed = mixup(x, torch.cat(parts, dim=1), self.mixup_alpha)
            parts = list(torch.split(mixed, self.n_classes, dim=1))
        logits = model(x)
        loss = self.loss_fn(logits, parts[0])
        if teacher is not None:
            kd = distillation_loss(logits, parts[1], self.kd_temperature)
            loss = (1 - self.kd_weight) * loss + self.kd_weight * kd
        if self.ema is not None:
            with torch.no_grad():
                ema_p = F.softmax(self.ema(x).float(), dim=1)
            loss = loss + self.mt_weight * consistency_loss(logits, ema_p)
        return loss, logits

    @torch.no_grad()
    def after_step(self, model: nn.Module) -> None:
        """Move the mean teacher toward the student (exponential moving average of the weights)."""
        if self.ema is None:
            return
        for e, p in zip(self.ema.state_dict().values(), model.state_dict().values(), strict=True):
            if e.dtype.is_floating_point:
                e.mul_(self.mt_decay).add_(p.detach(), alpha=1 - self.mt_decay)
            else:
                e.copy_(p)


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
    if not 0 <= aug.dir_p <= 1:
        raise ConfigError(f"augment.dir_p={aug.dir_p}: expected a probability in [0, 1]")
    if aug.roll_max_seconds < 0 or aug.gain_db < 0 or aug.dir_count < 1:
        raise ConfigError("augment.roll_max_seconds and augment.gain_db must be >= 0, augment.dir_count >= 1")
    if not 0 <= aug.device_translation_p <= 1:
        raise ConfigError(
            f"augment.device_translation_p={aug.device_translation_p}: expected a probability in [0, 1]"
        )
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
    if not 0 <= train.kd_weight <= 1:
        raise ConfigError(f"train.kd_weight={train.kd_weight}: expected a value in [0, 1]")
    if train.kd_temperature <= 0:
        raise ConfigError(f"train.kd_temperature={train.kd_temperature}: expected > 0")
    if train.mean_teacher_weight < 0 or not 0 < train.mean_teacher_decay < 1:
        raise ConfigError("train.mean_teacher_weight must be >= 0 and train.mean_teacher_decay in (0, 1)")
    if train.focal_gamma < 0:
        raise ConfigError(f"train.focal_gamma={train.focal_gamma}: expected >= 0")
