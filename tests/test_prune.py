"""Magnitude pruning: schedule, exact counts, zeros free in the size, permanent masks, training runs."""

import json

import pytest
import torch

from tests.conftest import train_args
from tinyasc.cli import main
from tinyasc.compress.prune import Pruner, prunable, target_sparsity
from tinyasc.compress.size import model_size
from tinyasc.models import create_model


def test_schedules():
    assert [target_sparsity(e, 0.8, 3, 4) for e in (1, 2, 3, 4, 6, 9)] == pytest.approx(
        [0, 0, 0.2, 0.4, 0.8, 0.8]
    )
    assert target_sparsity(3, 0.75, 3, 2, "exponential") == pytest.approx(1 - 0.25**0.5)
    assert target_sparsity(4, 0.75, 3, 2, "exponential") == pytest.approx(0.75)
    assert target_sparsity(5, 0.0, 1, 1) == 0.0
    with pytest.raises(ValueError, match="schedule"):
        target_sparsity(5, 0.5, 1, 1, "cubic")


def test_global_and_layer_pruning_counts():
    torch.manual_seed(0)
    m = create_model("dcase2021_baseline")
    p = Pruner(m, "global")
    total = p.total()
    # conv 1x16x49 + 16x16x49 + 16x32x49, dense 64x100 + 100x10
    assert total == sum(w.numel() for w in prunable(m).values()) == 784 + 12_544 + 25_088 + 6_400 + 1_000
    mags = torch.cat([w.detach().abs().flatten() for w in prunable(m).values()])
    p.update(0.3)
    assert p.zeros() == round(0.3 * total)
    kept = torch.cat([w.detach().abs().flatten() for w in prunable(m).values()])
    assert kept[kept != 0].min() >= mags.sort().values[round(0.3 * total) - 1]  # the smallest went
    m2 = create_model("dcase2021_baseline")
    q = Pruner(m2, "layer", exclude=("conv1",))
    q.update(0.5)
    for name, w in prunable(m2).items():
        zeros = int((w == 0).sum())
        assert zeros == (0 if name == "conv1" else round(0.5 * w.numel())), name
    with pytest.raises(ValueError, match="not conv or linear layers"):
        Pruner(m2, "layer", exclude=("bn1",))


def test_pruning_to_s_cuts_nonzero_bytes_by_s():
    torch.manual_seed(0)
    m = create_model("dcase2021_baseline")
    for mod in m.modules():  # no incidental zeros: biases and BN statistics non-zero
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.fill_(0.1)
        if getattr(mod, "bias", None) is not None:
            mod.bias.data.fill_(0.01)
    before = model_size(m, "float16")
    p = Pruner(m, "global")
    p.update(0.6)
    after = model_size(m, "float16")
    pruned = round(0.6 * p.total())
    assert before.nonzero_bytes - after.nonzero_bytes == 2 * pruned  # float16 weights: 2 bytes each
    assert after.bytes == before.bytes  # stored values unchanged, only non-zeros counted


def test_masks_are_permanent():
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    p = Pruner(m, "global")
    p.update(0.5)
    zero = [w == 0 for w in prunable(m).values()]
    opt = torch.optim.Adam(m.parameters(), lr=0.1)
    for _ in range(3):
        m(torch.randn(4, 8)).sum().backward()
        opt.step()
        p.apply()
    for z, w in zip(zero, prunable(m).values(), strict=True):
        assert (w[z] == 0).all()


def test_pruned_training_run_resumes_and_bad_targets(tiny_corpus, tmp_path, capsys):
    cache = tmp_path / "cache"
    extra = ["prune.target=0.5", "prune.ramp_epochs=2", "prune.start_epoch=1"]
    assert main(train_args(tiny_corpus, tmp_path / "a", cache, 3, extra)) == 0
    recs = [json.loads(line) for line in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    assert [r["sparsity"] for r in recs] == pytest.approx([0.25, 0.5, 0.5], abs=1e-4)
    assert all(r["best_epoch"] >= 2 for r in recs[1:])  # selection only once the target is reached
    size = json.loads((tmp_path / "a" / "size.json").read_text())
    assert size["nonzero_bytes"] < 93_004 - 2 * round(0.49 * 45_816)
    assert main(train_args(tiny_corpus, tmp_path / "b", cache, 2, extra)) == 0
    assert main([*train_args(tiny_corpus, tmp_path / "b", cache, 3, extra), "--resume"]) == 0
    recs_b = [json.loads(line) for line in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert [r["train_loss"] for r in recs_b] == [r["train_loss"] for r in recs]
    capsys.readouterr()
    bad = ["prune.target=0.5", "prune.ramp_epochs=5"]
    assert main(train_args(tiny_corpus, tmp_path / "c", cache, 3, bad)) != 0
    assert "reaches the target at epoch 5, after the last epoch 3" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()
    assert main(train_args(tiny_corpus, tmp_path / "d", cache, 3, ["prune.target=1.0"])) != 0
    assert "prune.target=1.0" in capsys.readouterr().err


def test_cpresnet_recipe_fits_after_its_pruning():
    from tinyasc.config import load_config

    cfg = load_config("configs/recipe_cpresnet.yaml")
    torch.manual_seed(0)
    m = create_model(cfg.model.name)
    assert model_size(m, "float16").bytes > 128_000
    Pruner(m, cfg.prune.scope, tuple(cfg.prune.exclude)).update(cfg.prune.target)
    assert model_size(m, "float16").nonzero_bytes <= 128_000
