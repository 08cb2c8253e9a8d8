"""Waveform augmentation: roll, gain, device impulse responses (procedural and from files), the waveform
training path."""

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from tests.conftest import train_args
from tinyasc.augment.waveform import DeviceIR, Gain, TimeRoll, fft_convolve, load_irs, procedural_irs
from tinyasc.cli import main
from tinyasc.config import load_config
from tinyasc.data.audio import AudioError
from tinyasc.data.cache import cached_features, cached_waveforms
from tinyasc.data.index import load_tau
from tinyasc.train.recipe import BatchRecipe


def test_roll_and_gain():
    torch.manual_seed(0)
    x = torch.randn(4, 100)
    roll = TimeRoll(10).train()
    y = roll(x)
    for b in range(4):
        assert any(torch.equal(y[b], torch.roll(x[b], s)) for s in range(-10, 11))
    g = Gain(6.0).train()(x)
    ratio = (g / x).mean(dim=1)
    assert ((ratio >= 10 ** (-6 / 20) - 1e-6) & (ratio <= 10 ** (6 / 20) + 1e-6)).all()
    assert roll.eval()(x) is x and Gain(6.0).eval()(x) is x


def test_fft_convolution_and_device_ir():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 200)).astype(np.float32)
    h = rng.normal(size=(3, 17)).astype(np.float32)
    expected = np.stack([np.convolve(x[i], h[i])[:200] for i in range(3)])
    np.testing.assert_allclose(
        fft_convolve(torch.from_numpy(x), torch.from_numpy(h)).numpy(), expected, atol=1e-4
    )
    delta = np.zeros(8, dtype=np.float32)
    delta[0] = 1
    xt = torch.from_numpy(x)
    torch.testing.assert_close(
        DeviceIR([delta], p=1.0).train()(xt, torch.ones(3, dtype=torch.bool)), xt, atol=1e-5, rtol=1e-5
    )
    aug = DeviceIR([h[0]], p=1.0).train()
    out = aug(xt, torch.tensor([True, False, True]))
    assert torch.equal(out[1], xt[1])  # device-A clips only
    np.testing.assert_allclose(out[0].numpy(), np.convolve(x[0], h[0])[:200], atol=1e-4)
    assert aug.eval()(xt, torch.ones(3, dtype=torch.bool)) is xt


def test_procedural_irs_are_deterministic_minimum_phase_band_limited():
    irs = procedural_irs(8, 44100, 1024, seed=3)
    assert len(irs) == 8 and all(len(h) == 1024 for h in irs)
    np.testing.assert_array_equal(irs[0], procedural_irs(8, 44100, 1024, seed=3)[0])
    assert not np.array_equal(irs[0], procedural_irs(8, 44100, 1024, seed=4)[0])
    for h in irs:
        assert np.sum(h**2) == pytest.approx(1.0, rel=1e-4)
        assert np.sum(h[:128] ** 2) > 0.5  # minimum phase: the energy comes first
        spec = np.abs(np.fft.rfft(h, 8192))
        f = np.fft.rfftfreq(8192, 1 / 44100)
        assert spec[np.argmin(abs(f - 20000))] < spec[np.argmin(abs(f - 1000))]  # low-pass above 18 kHz


def test_load_irs_from_a_folder(tmp_path):
    folder = tmp_path / "irs"
    folder.mkdir()
    with pytest.raises(AudioError, match="no impulse responses"):
        load_irs(folder, 44100)
    h = np.zeros((480, 2), dtype=np.float32)
    h[0] = 0.5
    h[10] = 0.25
    sf.write(folder / "mic1.wav", h, 48000)
    sf.write(folder / "mic0.wav", np.r_[1.0, np.zeros(99)].astype(np.float32), 44100)
    irs = load_irs(folder, 44100)
    assert len(irs) == 2 and len(irs[0]) == 100 and len(irs[1]) == 441  # sorted names, resampled
    assert all(np.sum(ir.astype(np.float64) ** 2) == pytest.approx(1.0, rel=1e-5) for ir in irs)
    sf.write(folder / "silent.wav", np.zeros(50, dtype=np.float32), 44100)
    with pytest.raises(AudioError, match="silent.wav: impulse response is silent"):
        load_irs(folder, 44100)
    with pytest.raises(AudioError, match="folder not found"):
        load_irs(tmp_path / "none", 44100)


def test_waveform_path_gives_the_cached_features(tiny_corpus, tmp_path):
    """Without an active augmentation the per-batch frontend reproduces the feature cache."""
    cfg = load_config(None, ["augment.dir_p=1.0", f"data.root={tiny_corpus}"])
    index = load_tau(tiny_corpus)
    clips = index.split("train")[:3]
    paths = [index.path(c) for c in clips]
    waves = cached_waveforms(44100, 441000, paths, tmp_path / "cache")
    feats = cached_features(cfg.frontend, paths, tmp_path / "cache")
    recipe = BatchRecipe(cfg.augment, cfg.train, 10, frontend=cfg.frontend).train()
    wave = torch.from_numpy(np.asarray(waves, dtype=np.float32))
    out = recipe.features(wave, torch.zeros(3, dtype=torch.bool))  # no device-A clip: no IR applied
    assert out.shape == (3, 1, 40, 500)
    torch.testing.assert_close(
        out[:, 0], torch.from_numpy(np.asarray(feats, dtype=np.float32)), atol=0.05, rtol=0.01
    )
    changed = recipe.features(wave, torch.ones(3, dtype=torch.bool))
    assert not torch.allclose(changed, out)


def test_training_with_waveform_augmentation(tiny_corpus, tmp_path):
    extra = ["augment.dir_p=0.6", "augment.roll_max_seconds=0.1", "augment.gain_db=3", "augment.dir_count=4"]
    assert main(train_args(tiny_corpus, tmp_path / "run", tmp_path / "cache", 1, extra)) == 0
    rec = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[0])
    assert rec["train_clips"] > 0 and np.isfinite(rec["train_loss"])
    assert any(p.name.startswith("wave-") for p in (tmp_path / "cache").glob("*.npy"))
