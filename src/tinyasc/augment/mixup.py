"""Mixup (Zhang et al. 2018) on a batch, with soft targets for the matching loss.

``x' = lam x + (1 - lam) x[perm]`` and ``t' = lam t + (1 - lam) t[perm]`` with ``lam ~ Beta(alpha,
alpha)`` drawn per clip. Any loss linear in the targets (cross-entropy, focal loss on soft targets)
then equals ``lam L(y) + (1 - lam) L(y[perm])``, the mixup loss.
"""

from __future__ import annotations

import torch


def mixup(x: torch.Tensor, targets: torch.Tensor, alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(mixed inputs, mixed soft targets); ``targets`` are (B, C) probabilities."""
    b = x.shape[0]
    lam = torch.distributions.Beta(alpha, alpha).sample((b,)).to(x)
    perm = torch.randperm(b, device=x.device)
    lx = lam.reshape(b, *([1] * (x.dim() - 1)))
    lt = lam.reshape(b, 1)
    return lx * x + (1 - lx) * x[perm], lt * targets + (1 - lt) * targets[perm]
