"""Spectrogram augmentation, mixup and the losses: shapes, identity in eval, hand-computed values."""

import math

import pytest
import torch
import torch.nn.functional as F

from tinyasc.augment.mixup import mixup
from tinyasc.augment.spectrogram import FreqMixStyle, FreqShift, SpecAugment
from tinyasc.config import ConfigError, load_config
from tinyasc.train.objectives import focal_loss, soft_cross_entropy, soft_targets
from tinyasc.train.recipe import BatchRecipe

AUGS = [SpecAugment(2, 8, 2, 20), FreqMixStyle(p=1.0, alpha=0.3), FreqShift(4)]


@pytest.mark.parametrize("aug", AUGS, ids=lambda a: type(a).__name__)
def test_shape_kept_and_identity_in_eval(aug):
    torch.manual_seed(0)
    x = torch.randn(4, 1, 40, 100)
    aug.train()
    y = aug(x)
    assert y.shape == x.shape and not torch.equal(y, x)
    aug.eval()
    assert aug(x) is x


def test_specaugment_masks_within_bounds():
    torch.manual_seed(0)
    x = torch.randn(8, 1, 40, 100) + 10  # no natural zeros
    y = SpecAugment(freq_masks=1, freq_width=5, time_masks=0).train()(x)
    zero_rows = (y == 0).all(dim=3).squeeze(1)  # (B, F): bins masked over all frames
    assert (zero_rows.sum(1) <= 5).all() and zero_rows.any()
    assert torch.equal(y[y != 0], x[y != 0])
    z = SpecAugment(freq_masks=0, time_masks=2, time_width=10).train()(x)
    zero_cols = (z == 0).all(dim=2).squeeze(1)
    assert (zero_cols.sum(1) <= 20).all() and zero_cols.any()


def test_freq_mixstyle_mixes_per_frequency_statistics():
    torch.manual_seed(3)
    x = torch.randn(4, 2, 6, 50) * torch.rand(4, 1, 6, 1) * 3 + torch.randn(4, 1, 6, 1)
    aug = FreqMixStyle(p=1.0, alpha=0.3).train()
    torch.manual_seed(7)
    y = aug(x)
    torch.manual_seed(7)
    torch.rand(())  # the probability draw
    lam = torch.distributions.Beta(0.3, 0.3).sample((4, 1, 1, 1))
    perm = torch.randperm(4)
    mu, sig = x.mean(dim=(1, 3), keepdim=True), (x.var(dim=(1, 3), keepdim=True) + 1e-6).sqrt()
    torch.testing.assert_close(
        y.mean(dim=(1, 3), keepdim=True), lam * mu + (1 - lam) * mu[perm], atol=1e-4, rtol=1e-4
    )
    torch.testing.assert_close(
        y.std(dim=(1, 3), keepdim=True), lam * sig + (1 - lam) * sig[perm], atol=1e-3, rtol=1e-3
    )
    same = torch.randn(1, 1, 6, 50).repeat(3, 1, 1, 1)  # identical clips: nothing to mix
    torch.testing.assert_close(aug(same), same, atol=1e-4, rtol=1e-4)


def test_freq_shift_moves_whole_spectra():
    torch.manual_seed(0)
    x = torch.arange(16.0).reshape(1, 1, 16, 1).repeat(6, 1, 1, 3)
    y = FreqShift(3).train()(x)
    for b in range(6):
        col = y[b, 0, :, 0]
        s = int(col[8] - 8) * -1  # bin 8 is never clamped for |s| <= 3
        assert -3 <= s <= 3
        assert torch.equal(col, (torch.arange(16) - s).clamp(0, 15).float())


def test_mixup_matches_hand_computed_loss():
    torch.manual_seed(1)
    x = torch.randn(4, 1, 5, 7)
    y = torch.tensor([0, 1, 2, 1])
    t = soft_targets(y, 3)
    torch.manual_seed(5)
    xm, tm = mixup(x, t, alpha=0.4)
    torch.manual_seed(5)
    lam = torch.distributions.Beta(0.4, 0.4).sample((4,))
    perm = torch.randperm(4)
    torch.testing.assert_close(xm, lam.reshape(4, 1, 1, 1) * x + (1 - lam.reshape(4, 1, 1, 1)) * x[perm])
    logits = torch.randn(4, 3)
    per_clip = lam * F.cross_entropy(logits, y, reduction="none") + (1 - lam) * F.cross_entropy(
        logits, y[perm], reduction="none"
    )
    torch.testing.assert_close(soft_cross_entropy(logits, tm), per_clip.mean())


def test_losses_hand_values():
    logits = torch.tensor([[0.0, math.log(3.0)]])  # p = (0.25, 0.75)
    t = soft_targets(torch.tensor([1]), 2)
    assert soft_cross_entropy(logits, t).item() == pytest.approx(-math.log(0.75))
    assert focal_loss(logits, t, gamma=2.0).item() == pytest.approx(-(0.25**2) * math.log(0.75))
    assert focal_loss(logits, t, gamma=0.0).item() == pytest.approx(-math.log(0.75))
    logits = torch.randn(5, 4)
    y = torch.tensor([0, 3, 1, 1, 2])
    torch.testing.assert_close(
        soft_cross_entropy(logits, soft_targets(y, 4, 0.1)), F.cross_entropy(logits, y, label_smoothing=0.1)
    )


def test_recipe_and_config_errors():
    cfg = load_config(
        None, ["augment.mixup_alpha=0.3", "augment.specaugment_freq_masks=2", "train.loss=focal"]
    )
    recipe = BatchRecipe(cfg.augment, cfg.train, 10)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(40 * 20, 10))
    loss, logits = recipe(model, torch.randn(4, 1, 40, 20), torch.tensor([0, 1, 2, 3]))
    assert logits.shape == (4, 10) and torch.isfinite(loss)
    recipe.eval()
    x = torch.randn(2, 1, 40, 20)
    assert torch.equal(recipe.augment(x), x)
    for bad, match in (
        ("augment.mixstyle_p=2", "mixstyle_p"),
        ("train.loss=hinge", "train.loss"),
        ("train.label_smoothing=1.5", "label_smoothing"),
        ("augment.freq_shift=-1", "freq_shift"),
    ):
        with pytest.raises(ConfigError, match=match):  # refused when the config loads
            load_config(None, [bad])


def test_augmented_training_is_reproducible_and_resumes(tiny_corpus, tmp_path):
    import json

    from tests.conftest import train_args
    from tinyasc.cli import main

    extra = [
        "augment.mixup_alpha=0.3",
        "augment.specaugment_freq_masks=2",
        "augment.mixstyle_p=0.5",
        "train.label_smoothing=0.1",
        "augment.device_translation_p=0.5",
    ]
    cache = tmp_path / "cache"
    assert main(train_args(tiny_corpus, tmp_path / "a", cache, 2, extra)) == 0
    assert main(train_args(tiny_corpus, tmp_path / "b", cache, 1, extra)) == 0
    assert main([*train_args(tiny_corpus, tmp_path / "b", cache, 2, extra), "--resume"]) == 0

    def records(run):
        return [
            {k: v for k, v in json.loads(line).items() if k != "train_seconds"}
            for line in (run / "metrics.jsonl").read_text().splitlines()
        ]

    assert records(tmp_path / "a") == records(tmp_path / "b")
    assert len(records(tmp_path / "a")) == 2
    transfers = json.loads((tmp_path / "a" / "device_transfer.json").read_text())
    assert transfers and all(len(v) == 40 for v in transfers.values())  # one value per mel band


def test_device_transfer_learned_from_parallel_recordings():
    from types import SimpleNamespace

    import numpy as np

    from tinyasc.augment.device import DeviceTranslation, learn_device_transfer

    rng = np.random.default_rng(0)
    clips, feats = [], []
    response = {"a": np.zeros(4), "b": np.array([1.0, 0.0, -1.0, -2.0]), "s1": np.array([0.5, 0.5, 0.0, 0.0])}
    for seg in range(3):
        base = rng.normal(size=(4, 6))
        for dev in ("a", "b", "s1") if seg < 2 else ("a", "b"):
            clips.append(SimpleNamespace(scene="park", city="x", location="1", segment=str(seg), device=dev))
            feats.append(base + response[dev][:, None])
    clips.append(SimpleNamespace(scene="park", city="x", location="1", segment="9", device="c"))  # no A pair
    feats.append(rng.normal(size=(4, 6)))
    transfers = learn_device_transfer(clips, np.stack(feats), np.arange(len(clips)))
    assert sorted(transfers) == ["b", "s1"]
    np.testing.assert_allclose(transfers["b"], response["b"], atol=1e-6)
    np.testing.assert_allclose(transfers["s1"], response["s1"], atol=1e-6)

    std = torch.tensor([1.0, 2.0, 1.0, 1.0])
    aug = DeviceTranslation(transfers, std, p=1.0).train()
    x = torch.zeros(3, 1, 4, 5)
    out = aug(x, torch.tensor([True, False, True]))
    assert torch.equal(out[1], x[1])  # only reference-device clips are translated
    shifts = {tuple(out[i, 0, :, 0].tolist()) for i in (0, 2)}
    allowed = {tuple((torch.from_numpy(transfers[d]) / std).tolist()) for d in transfers}
    assert shifts <= allowed
    assert torch.equal(aug.eval()(x, torch.tensor([True, True, True])), x)
