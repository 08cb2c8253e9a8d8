"""The training-time recipe of one batch: spectrogram augmentation, targets, mixup and the loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tinyasc.augment.mixup import mixup
from tinyasc.augment.spectrogram import FreqMixStyle, FreqShift, SpecAugment
from tinyasc.augment.waveform import DeviceIR, Gain, TimeRoll, load_irs, procedural_irs
from tinyasc.config import AugmentConfig, FrontendConfig, TrainConfig
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
        frontend: FrontendConfig | None = None,
    ):
        super().__init__()
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
        self.mt_weight = train.mean_teacher_weight
        self.ema: nn.Module | None = None  # the mean teacher (train/hooks.py MeanTeacher), when on
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

    def features(self, wave: torch.Tensor, is_reference: torch.Tensor | None = None) -> torch.Tensor:
        """Waveform batch (B, samples) -> augmented log-mel (B, 1, n_mels, frames), not normalised.

        Order: device impulse response (device-A clips), time roll, gain, then the frontend."""
        if self.dir is not None:
            ref = is_reference if is_reference is not None else torch.ones(len(wave), dtype=torch.bool)
            wave = self.dir(wave, ref)
        return self.logmel(self.gain(self.roll(wave)))

    def set_device_translation(self, module: nn.Module) -> None:
        self.translate = module

    def set_mean_teacher(self, ema: nn.Module) -> None:
        self.ema = ema

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
