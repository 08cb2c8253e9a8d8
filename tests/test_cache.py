import json
import os

import numpy as np
import pytest
import soundfile as sf

from tinyasc.config import FrontendConfig
from tinyasc.data import cache as cache_mod
from tinyasc.data.cache import cached_features


@pytest.fixture()
def wavs(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for i in range(3):
        p = tmp_path / f"{i}.wav"
        sf.write(p, (0.1 * rng.standard_normal(44100)).astype(np.float32), 44100, subtype="PCM_24")
        paths.append(p)
    return paths


CFG = FrontendConfig(duration=1.0, frames=50)


def test_cache_computes_once_then_hits(tmp_path, wavs, monkeypatch):
    feats = cached_features(CFG, wavs, tmp_path / "c")
    assert feats.shape == (3, 40, 50) and feats.dtype == np.float16
    sidecars = list((tmp_path / "c").glob("*.json"))
    assert len(sidecars) == 1 and json.loads(sidecars[0].read_text())["complete"] is True

    def boom(*a, **k):
        raise AssertionError("recomputed")

    monkeypatch.setattr(cache_mod, "compute_features", boom)
    again = cached_features(CFG, wavs, tmp_path / "c")
    np.testing.assert_array_equal(again, feats)


def test_changed_settings_or_audio_never_read_stale(tmp_path, wavs):
    a = np.array(cached_features(CFG, wavs, tmp_path / "c"))
    b = np.array(cached_features(FrontendConfig(duration=1.0, frames=50, n_mels=20), wavs, tmp_path / "c"))
    assert b.shape == (3, 20, 50)
    sf.write(wavs[1], np.zeros(44100, dtype=np.float32), 44100, subtype="PCM_24")
    os.utime(wavs[1], ns=(1, 1))  # a different mtime and content
    c = np.array(cached_features(CFG, wavs, tmp_path / "c"))
    np.testing.assert_array_equal(c[0], a[0])
    assert not np.array_equal(c[1], a[1])


def test_crash_mid_write_leaves_no_cache(tmp_path, wavs, monkeypatch):
    def crash(cfg, paths, out, **k):
        out[0] = 1.0
        raise KeyboardInterrupt

    monkeypatch.setattr(cache_mod, "compute_features", crash)
    with pytest.raises(KeyboardInterrupt):
        cached_features(CFG, wavs, tmp_path / "c")
    assert list((tmp_path / "c").iterdir()) == []
    monkeypatch.undo()
    feats = cached_features(CFG, wavs, tmp_path / "c")
    assert np.isfinite(feats).all() and not np.all(feats[0] == 1.0)
