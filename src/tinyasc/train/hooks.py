"""Training features that act at fixed points of ``fit()``, each a small object with its own state.

``fit()`` calls, in this order: ``wrap_model`` once on the CPU before any weights are loaded (QAT swaps
the model for its fake-quantised graph), ``attach`` once the model, with its resumed weights, and the
batch recipe are on the training device, ``start_epoch`` before each epoch, ``after_step`` after every optimiser
step, ``record`` for the fields it adds to the epoch's metrics line, and ``selectable`` before an epoch
may become the selected model; ``save`` writes what a hook learned at set-up into the run. ``state_dict``/``load_state_dict`` hold what ``last.pt`` must carry for
a bit-identical resume (under the hook's ``name``); a hook with nothing to carry returns ``None``.

Hooks are built by ``make_hooks`` from the config and the objects they act on; each is tested alone in
``tests/test_hooks.py``.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from tinyasc.augment.device import DeviceTranslation, learn_device_transfer
from tinyasc.compress import int8
from tinyasc.compress.prune import Pruner, target_sparsity
from tinyasc.compress.size import example_input
from tinyasc.config import Config, ConfigError, PruneConfig


class Hook:
    """The default of every hook point: do nothing."""

    name = "hook"

    def wrap_model(self, model: nn.Module) -> nn.Module:
        return model

    def attach(self, model: nn.Module, recipe: nn.Module, device: torch.device) -> None:
        pass

    def start_epoch(self, epoch: int) -> None:
        pass

    def after_step(self, model: nn.Module) -> None:
        pass

    def record(self) -> dict:
        return {}

    def selectable(self) -> bool:
        return True

    def state_dict(self) -> dict | None:
        return None

    def load_state_dict(self, state: dict) -> None:
        pass

    def save(self, run) -> None:
        """Write what the hook learned at set-up into the run directory (``rundir.RunDir``)."""


class QuantizationAware(Hook):
    """Fake quantisation from the first step (``quantize: int8-qat``): batch norm folded into its conv
    before training (the running statistics frozen into the weights), so that what trains is what ships."""

    name = "qat"

    def wrap_model(self, model: nn.Module) -> nn.Module:
        return int8.prepare(model, example_input(model), qat=True)


class Pruning(Hook):
    """Magnitude pruning: masks recomputed at each epoch's scheduled sparsity, re-applied after every step.

    Only epochs at the target sparsity may be selected: an earlier, denser epoch would ship more bytes.
    """

    name = "pruner"

    def __init__(self, prune: PruneConfig):
        self.cfg = prune
        self.pruner: Pruner | None = None

    def attach(self, model: nn.Module, recipe: nn.Module, device: torch.device) -> None:
        try:
            self.pruner = Pruner(model, self.cfg.scope, tuple(self.cfg.exclude))
        except ValueError as e:
            raise ConfigError(str(e)) from None

    def start_epoch(self, epoch: int) -> None:
        p = self.cfg
        self.pruner.update(target_sparsity(epoch, p.target, p.start_epoch, p.ramp_epochs, p.schedule))

    def after_step(self, model: nn.Module) -> None:
        self.pruner.apply()  # pruned weights stay exactly zero

    def record(self) -> dict:
        return {"sparsity": round(self.pruner.zeros() / self.pruner.total(), 6)}

    def selectable(self) -> bool:
        return self.pruner.sparsity >= self.cfg.target - 1e-9

    def state_dict(self) -> dict:
        return self.pruner.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.pruner.load_state_dict(state)


class MeanTeacher(Hook):
    """An exponential moving average of the student's weights, the teacher of the consistency loss.

    The teacher always predicts in eval mode (running batch-norm statistics, no dropout); its weights
    follow the student after every optimiser step: ``ema = decay * ema + (1 - decay) * student``.
    """

    name = "ema"

    def __init__(self, decay: float):
        self.decay = decay
        self.ema: nn.Module | None = None

    def attach(self, model: nn.Module, recipe: nn.Module, device: torch.device) -> None:
        self.ema = copy.deepcopy(model).eval()
        for p in self.ema.parameters():
            p.requires_grad_(False)
        recipe.set_mean_teacher(self.ema)

    @torch.no_grad()
    def after_step(self, model: nn.Module) -> None:
        for e, p in zip(self.ema.state_dict().values(), model.state_dict().values(), strict=True):
            if e.dtype.is_floating_point:
                e.mul_(self.decay).add_(p.detach(), alpha=1 - self.decay)
            else:
                e.copy_(p)

    def state_dict(self) -> dict:
        return self.ema.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.ema.load_state_dict(state)


class DeviceTranslationHook(Hook):
    """Device-A clips shifted by another device's spectral transfer, learned once from the training
    part's parallel recordings (deterministic, so nothing needs to resume)."""

    name = "device_translation"

    def __init__(self, clips, features: np.ndarray, rows: np.ndarray, std: torch.Tensor, p: float):
        self.transfers = learn_device_transfer(clips, features, rows)
        if not self.transfers:
            raise ConfigError(
                "augment.device_translation_p: no training clip has a parallel device-A recording"
            )
        self.module = DeviceTranslation(self.transfers, std, p)

    def attach(self, model: nn.Module, recipe: nn.Module, device: torch.device) -> None:
        recipe.set_device_translation(self.module.to(device))

    def save(self, run) -> None:
        run.save_device_transfer({k: v.tolist() for k, v in self.transfers.items()})


def make_hooks(cfg: Config, splits, norm: nn.Module) -> list[Hook]:
    """The hooks ``cfg`` switches on, in the order they act (QAT wraps the model before pruning sees it)."""
    hooks: list[Hook] = []
    if cfg.quantize == "int8-qat":
        hooks.append(QuantizationAware())
    if cfg.prune.target > 0:
        hooks.append(Pruning(cfg.prune))
    if cfg.train.mean_teacher_weight > 0:
        hooks.append(MeanTeacher(cfg.train.mean_teacher_decay))
    if cfg.augment.device_translation_p > 0:
        rows = splits.rows(splits.train)
        hooks.append(
            DeviceTranslationHook(
                splits.train, splits.features, rows, norm.std, cfg.augment.device_translation_p
            )
        )
    return hooks


def hook_states(hooks: list[Hook]) -> dict:
    """``{name: state}`` of the hooks that carry state, for ``last.pt``."""
    return {h.name: s for h in hooks if (s := h.state_dict()) is not None}


def load_hook_states(hooks: list[Hook], states: dict, where: str) -> None:
    for h in hooks:
        if h.state_dict() is None:
            continue
        if h.name not in states:
            raise ConfigError(f"{where}: has no {h.name} state to resume")
        h.load_state_dict(states[h.name])
