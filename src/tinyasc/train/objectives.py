"""Training losses on soft targets: cross-entropy (with label smoothing) and focal loss.

Targets are (B, C) probabilities: one-hot labels, smoothed labels ``(1 - eps) onehot + eps / C``, or the
mixed targets of mixup. Both losses are linear in the targets, so mixup's loss needs nothing extra.

- cross-entropy: ``-sum_c t_c log p_c``, mean over the batch (equals ``F.cross_entropy`` for one-hot);
- focal loss (Lin et al. 2017; Puy_VAI in DCASE 2021): ``-sum_c t_c (1 - p_c)^gamma log p_c``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def soft_targets(labels: torch.Tensor, n_classes: int, smoothing: float = 0.0) -> torch.Tensor:
    onehot = F.one_hot(labels, n_classes).float()
    return onehot * (1 - smoothing) + smoothing / n_classes if smoothing else onehot


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return -(targets * F.log_softmax(logits.float(), dim=1)).sum(dim=1).mean()


def focal_loss(logits: torch.Tensor, targets: torch.Tensor, gamma: float = 2.0) -> torch.Tensor:
    logp = F.log_softmax(logits.float(), dim=1)
    return -(targets * (1 - logp.exp()).pow(gamma) * logp).sum(dim=1).mean()


def make_loss(name: str, gamma: float = 2.0):
    if name == "ce":
        return soft_cross_entropy
    if name == "focal":
        return lambda logits, targets: focal_loss(logits, targets, gamma)
    raise ValueError(f"train.loss: {name!r}; expected 'ce' or 'focal'")


def distillation_loss(logits: torch.Tensor, teacher_probs: torch.Tensor, temperature: float) -> torch.Tensor:
    """``T^2 * KL(teacher_T || student_T)`` (Hinton et al. 2015), mean over the batch.

    ``teacher_probs`` is the teacher's softmax at temperature T (possibly mixed by mixup); the T^2 factor
    keeps the gradient scale independent of T.
    """
    logq = F.log_softmax(logits.float() / temperature, dim=1)
    t = teacher_probs.clamp_min(1e-12)
    return temperature**2 * (teacher_probs * (t.log() - logq)).sum(dim=1).mean()


def consistency_loss(logits: torch.Tensor, teacher_probs: torch.Tensor) -> torch.Tensor:
    """Mean-teacher consistency (Tarvainen and Valpola 2017): MSE between class distributions."""
    return ((F.softmax(logits.float(), dim=1) - teacher_probs) ** 2).sum(dim=1).mean()
