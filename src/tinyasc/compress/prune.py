"""Unstructured magnitude pruning with a ramp schedule during training (CP-ResNet style).

The prunable tensors are the weights of every Conv1d/Conv2d/Linear layer (biases and batch norm stay).
At the start of every epoch the target sparsity of that epoch is computed from the schedule and the
masks are recomputed from the current weight magnitudes: the smallest ``sparsity`` fraction of the
weights is zeroed, by one threshold over all prunable weights (``scope='global'``) or per layer
(``scope='layer'``). After every optimiser step the masks are applied again, so pruned weights stay
exactly zero; the zeros are what the DCASE 2021 size rule leaves uncounted.

Schedule: 0 before ``start_epoch``; from there the sparsity ramps to ``target`` over ``ramp_epochs``
epochs, linearly or exponentially (``1 - (1 - target) ** progress``, CP-JKU's 'exponential' ramp, which
prunes fast early and gently near the target), and stays at ``target`` afterwards.
"""

from __future__ import annotations

import torch
from torch import nn


def target_sparsity(
    epoch: int, target: float, start_epoch: int, ramp_epochs: int, schedule: str = "linear"
) -> float:
    """Sparsity of 1-based ``epoch``."""
    if target <= 0 or epoch < start_epoch:
        return 0.0
    progress = 1.0 if ramp_epochs <= 0 else min(1.0, (epoch - start_epoch + 1) / ramp_epochs)
    if schedule == "linear":
        return target * progress
    if schedule == "exponential":
        return 1 - (1 - target) ** progress
    raise ValueError(f"prune.schedule: {schedule!r}; expected 'linear' or 'exponential'")


def prunable(model: nn.Module, exclude: tuple[str, ...] = ()) -> dict[str, nn.Parameter]:
    """``{layer name: weight}`` of the conv and linear layers, minus the names in ``exclude``."""
    out = {}
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv1d | nn.Conv2d | nn.Linear) and name not in exclude:
            out[name] = m.weight
    return out


def _keep_largest(mags: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Boolean mask keeping all but the ``round(sparsity * n)`` smallest magnitudes (ranked, so that ties
    prune exactly that many)."""
    k = int(round(sparsity * mags.numel()))
    keep = torch.ones(mags.numel(), dtype=torch.bool)
    keep[torch.argsort(mags.float().cpu(), stable=True)[:k]] = False
    return keep


class Pruner:
    def __init__(self, model: nn.Module, scope: str = "global", exclude: tuple[str, ...] = ()):
        if scope not in ("global", "layer"):
            raise ValueError(f"prune.scope: {scope!r}; expected 'global' or 'layer'")
        self.scope = scope
        self.weights = prunable(model, exclude)
        unknown = set(exclude) - {
            n for n, m in model.named_modules() if isinstance(m, nn.Conv1d | nn.Conv2d | nn.Linear)
        }
        if unknown:
            raise ValueError(f"prune.exclude: {sorted(unknown)} are not conv or linear layers of the model")
        if not self.weights:
            raise ValueError("pruning: the model has no conv or linear weights to prune")
        self.masks = {n: torch.ones_like(w, dtype=torch.bool) for n, w in self.weights.items()}
        self.sparsity = 0.0

    @torch.no_grad()
    def update(self, sparsity: float) -> None:
        """Recompute the masks for ``sparsity`` from the current magnitudes and apply them."""
        if not 0 <= sparsity < 1:
            raise ValueError(f"sparsity {sparsity} outside [0, 1)")
        self.sparsity = sparsity
        if self.scope == "global":
            mags = torch.cat([w.detach().abs().flatten() for w in self.weights.values()])
            keep = _keep_largest(mags, sparsity)
            start = 0
            for n, w in self.weights.items():
                self.masks[n] = keep[start : start + w.numel()].reshape(w.shape).to(w.device)
                start += w.numel()
        else:
            for n, w in self.weights.items():
                self.masks[n] = (
                    _keep_largest(w.detach().abs().flatten(), sparsity).reshape(w.shape).to(w.device)
                )
        self.apply()

    @torch.no_grad()
    def apply(self) -> None:
        for n, w in self.weights.items():
            w.mul_(self.masks[n])

    def zeros(self) -> int:
        return sum(int((~m).sum()) for m in self.masks.values())

    def total(self) -> int:
        return sum(m.numel() for m in self.masks.values())

    def state_dict(self) -> dict:
        return {"sparsity": self.sparsity, "masks": {n: m.cpu() for n, m in self.masks.items()}}

    def load_state_dict(self, state: dict) -> None:
        if set(state["masks"]) != set(self.masks):
            raise ValueError("pruning state: its layers differ from the model's")
        self.sparsity = float(state["sparsity"])
        self.masks = {n: state["masks"][n].to(self.weights[n].device) for n in self.masks}
        self.apply()
