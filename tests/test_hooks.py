"""Training hooks, each alone: what it does at its hook points and that its state resumes exactly."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from tinyasc.compress import int8
from tinyasc.config import ConfigError, load_config
from tinyasc.train.hooks import (
    DeviceTranslationHook,
    Hook,
    MeanTeacher,
    Pruning,
    QuantizationAware,
    hook_states,
    load_hook_states,
    make_hooks,
)
from tinyasc.train.recipe import BatchRecipe

CPU = torch.device("cpu")


def _net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 3))


def _recipe(*overrides: str) -> BatchRecipe:
    cfg = load_config(None, list(overrides))
    return BatchRecipe(cfg.augment, cfg.train, 3)


def test_pruning_follows_its_schedule_keeps_zeros_and_selects_only_at_target():
    cfg = load_config(None, ["prune.target=0.5", "prune.start_epoch=2", "prune.ramp_epochs=2"])
    model = _net()
    hook = Pruning(cfg.prune)
    hook.attach(model, _recipe(), CPU)
    hook.start_epoch(1)
    assert hook.record() == {"sparsity": 0.0} and not hook.selectable()
    hook.start_epoch(2)
    assert hook.record()["sparsity"] == pytest.approx(0.25, abs=1e-3) and not hook.selectable()
    hook.start_epoch(3)
    assert hook.record()["sparsity"] == pytest.approx(0.5, abs=1e-3) and hook.selectable()
    zeros = model[0].weight == 0
    with torch.no_grad():
        model[0].weight.add_(1.0)  # an optimiser step moves every weight
    hook.after_step(model)
    assert torch.equal(model[0].weight == 0, zeros)  # the pruned ones are zero again

    other = _net()
    again = Pruning(cfg.prune)
    again.attach(other, _recipe(), CPU)
    again.load_state_dict(hook.state_dict())
    assert torch.equal(other[0].weight == 0, zeros) and again.selectable()


def test_mean_teacher_state_resumes_the_average():
    model = _net()
    hook = MeanTeacher(0.5)
    recipe = _recipe()
    hook.attach(model, recipe, CPU)
    assert recipe.ema is hook.ema and not hook.ema.training
    with torch.no_grad():
        model[2].weight.mul_(3.0)
    hook.after_step(model)
    other = MeanTeacher(0.5)
    other.attach(_net(), _recipe(), CPU)
    other.load_state_dict(hook.state_dict())
    torch.testing.assert_close(other.ema[2].weight, hook.ema[2].weight)


def test_quantization_aware_hook_swaps_in_a_fake_quantised_graph():
    from tinyasc.models import create_model

    model = create_model("dcase2021_baseline")
    wrapped = QuantizationAware().wrap_model(model)
    assert wrapped is not model
    observed = [m for m in wrapped.modules() if isinstance(m, int8.ObservedLayer)]
    assert len(observed) == 5 and all(m.qat for m in observed) and wrapped.training  # fake-quantised
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in wrapped.modules())  # folded
    assert QuantizationAware().state_dict() is None  # its state is the model's


def test_device_translation_hook_learns_transfers_and_sets_the_recipe():
    def clip(device, segment):
        return SimpleNamespace(device=device, scene="bus", city="x", location="l", segment=segment)

    clips = [clip("a", 1), clip("b", 1), clip("a", 2), clip("c", 2)]
    feats = np.zeros((4, 40, 5), dtype=np.float32)
    feats[1] += 2.0  # device b is 2 above its device-A twin in every band
    feats[3] -= 1.0
    hook = DeviceTranslationHook(clips, feats, np.arange(4), torch.ones(40), p=1.0)
    assert sorted(hook.transfers) == ["b", "c"]
    np.testing.assert_allclose(hook.transfers["b"], 2.0)
    recipe = _recipe()
    hook.attach(_net(), recipe, CPU)
    assert recipe.translate is hook.module
    with pytest.raises(ConfigError, match="parallel device-A"):
        DeviceTranslationHook(clips[:1], feats, np.arange(1), torch.ones(40), p=1.0)


def test_make_hooks_order_and_generic_resume():
    cfg = load_config(
        None, ["quantize=int8-qat", "prune.target=0.3", "train.mean_teacher_weight=0.5", "train.epochs=20"]
    )
    hooks = make_hooks(cfg, splits=None, norm=None)
    assert [type(h) for h in hooks] == [QuantizationAware, Pruning, MeanTeacher]  # QAT before pruning
    assert make_hooks(load_config(), None, None) == []

    model = _net()
    hooks = [Pruning(load_config(None, ["prune.target=0.3"]).prune), MeanTeacher(0.9), Hook()]
    for h in hooks:
        h.attach(model, _recipe(), CPU)
    hooks[0].start_epoch(20)
    states = hook_states(hooks)
    assert set(states) == {"pruner", "ema"}  # a hook without state carries none
    fresh = [Pruning(load_config(None, ["prune.target=0.3"]).prune), MeanTeacher(0.9)]
    for h in fresh:
        h.attach(_net(), _recipe(), CPU)
    load_hook_states(fresh, states, "last.pt")
    assert fresh[0].state_dict()["sparsity"] == hooks[0].state_dict()["sparsity"]
    with pytest.raises(ConfigError, match="last.pt: has no ema state"):
        load_hook_states(fresh, {"pruner": states["pruner"]}, "last.pt")
