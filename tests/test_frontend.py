import librosa
import numpy as np
import pytest
import scipy.signal
import torch

from tinyasc.config import FrontendConfig
from tinyasc.frontend import LogMel, band_groups, band_statistics, magnitude, mel_filterbank, reflect_pad
from tinyasc.models.cpmobile import FRONTEND_CPM
from tinyasc.models.layers import FRONTEND_256


def librosa_baseline_features(y: np.ndarray) -> np.ndarray:
    """The DCASE 2021 baseline recipe written with librosa (reference section 1.1)."""
    window = scipy.signal.get_window("hamming", 1764, fftbins=True)  # hamming(sym=False)
    spec = np.abs(
        librosa.stft(
            y + np.spacing(1),
            n_fft=2048,
            win_length=1764,
            hop_length=882,
            window=window,
            center=True,
            pad_mode="reflect",
        )
    )
    mel = librosa.filters.mel(sr=44100, n_fft=2048, n_mels=40, fmin=0, fmax=22050, htk=False)
    return np.log(mel @ spec + np.spacing(1))[:, :500]


def test_mel_filterbank_matches_librosa():
    ours = mel_filterbank(44100, 2048, 40, 0.0, 22050.0)
    ref = librosa.filters.mel(sr=44100, n_fft=2048, n_mels=40, fmin=0, fmax=22050, htk=False)
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-9)
    ours_htk = mel_filterbank(32000, 4096, 256, 0.0, 16000.0, htk=True)
    ref_htk = librosa.filters.mel(sr=32000, n_fft=4096, n_mels=256, fmin=0, fmax=16000, htk=True)
    np.testing.assert_allclose(ours_htk, ref_htk, rtol=1e-5, atol=1e-9)


def test_logmel_matches_librosa_on_real_length_clips():
    rng = np.random.default_rng(0)
    t = np.arange(441000) / 44100
    clips = np.stack(
        [
            (0.1 * rng.standard_normal(441000)).astype(np.float32),
            (
                0.3 * np.sin(2 * np.pi * 440 * t) * (1 + np.sin(2 * np.pi * 0.5 * t))
                + 0.01 * rng.standard_normal(441000)
            ).astype(np.float32),
        ]
    )
    out = LogMel(FrontendConfig())(torch.from_numpy(clips)).numpy()
    assert out.shape == (2, 1, 40, 500)
    for i in range(2):
        np.testing.assert_allclose(out[i, 0], librosa_baseline_features(clips[i]), atol=2e-4, rtol=1e-4)


def test_magnitude_is_complex_abs_to_the_power():
    # STFT bins of a 5-s clip, a zero bin, and values a float32 square would lose (overflow and underflow
    # are out of an audio STFT's range: |X| <= n_fft for samples in [-1, 1]).
    audio = torch.from_numpy(np.random.default_rng(3).normal(0, 0.1, (2, 220500)).astype(np.float32))
    spec = torch.stft(audio, 2048, 1024, window=torch.hann_window(2048), return_complex=True)
    spec[0, 5, 7] = 0
    spec[1, 0, 0] = complex(1e-12, -3e-12)
    for power in (1.0, 2.0, 1.5):
        ours, ref = magnitude(spec, power), spec.abs() ** power
        assert ours.shape == ref.shape and ours.dtype == torch.float32
        assert ours[0, 5, 7] == 0
        torch.testing.assert_close(ours, ref, rtol=3e-7 * max(power, 1), atol=1e-30)
    # the power 1 is the root of the power 2 (one rounding), not a root squared back
    assert torch.equal(magnitude(spec, 1.0), magnitude(spec, 2.0).sqrt())


def test_grouped_filterbank_product_equals_the_dense_one():
    # the baseline's 40 bands, the zoo's 256, CP-Mobile's HTK 256 at 32 kHz (power 2), and 128 bands of a
    # 256-point FFT, 32 of whose filters touch no bin (they must give the floor, as the dense product does)
    cases = [
        FrontendConfig(duration=2.0),
        FrontendConfig(**{**FRONTEND_256, "duration": 2.0}),
        FrontendConfig(**FRONTEND_CPM),
        FrontendConfig(duration=1.0, n_fft=256, win_length=256, hop_length=128, window="hann", n_mels=128),
    ]
    rng = np.random.default_rng(4)
    for cfg in cases:
        lm = LogMel(cfg)
        fb = lm.mel_fb.numpy()
        covered = np.zeros_like(fb, dtype=bool)
        for b0, b1, lo, hi in band_groups(fb):
            covered[b0:b1, lo:hi] = True
        assert not (fb[~covered] != 0).any()  # the groups hold every non-zero weight
        audio = torch.from_numpy(rng.normal(0, 0.1, (2, cfg.clip_samples)).astype(np.float32))
        spec = torch.stft(
            audio, cfg.n_fft, cfg.hop_length, cfg.win_length, lm.window, center=True, pad_mode="reflect",
            return_complex=True,
        )  # fmt: skip
        dense = torch.log(lm.mel_fb @ spec.abs() ** cfg.power + cfg.log_eps)
        torch.testing.assert_close(lm.log_mel(spec), dense, rtol=1e-5, atol=1e-5)
    # a group of filters that all touch no bin takes one bin of zero weights
    fb = np.zeros((32, 10), dtype=np.float32)
    fb[16:, 3:5] = 1
    assert band_groups(fb) == [(0, 16, 0, 1), (16, 32, 3, 5)]


def test_reflect_pad_is_the_stft_centring_to_the_bit():
    rng = np.random.default_rng(5)
    for shape, pad in (((2, 441000), 1024), ((1, 1025), 1024), ((3, 900), 128), ((700,), 256)):
        audio = torch.from_numpy(rng.normal(0, 0.1, shape).astype(np.float32))
        ref = torch.nn.functional.pad(audio[None], (pad, pad), mode="reflect")[0]
        assert torch.equal(reflect_pad(audio, pad), ref)
    # LogMel pads by hand; its features are those of torch.stft's own centring, bit for bit
    cfg = FrontendConfig(duration=1.0)
    lm = LogMel(cfg)
    audio = torch.from_numpy(rng.normal(0, 0.1, (2, cfg.clip_samples)).astype(np.float32))
    spec = torch.stft(
        audio, cfg.n_fft, cfg.hop_length, cfg.win_length, lm.window, center=True, pad_mode="reflect",
        return_complex=True,
    )  # fmt: skip
    assert torch.equal(lm(audio)[:, 0], lm.log_mel(spec)[..., : cfg.n_frames])


def test_short_audio_is_refused_with_its_own_length():
    # the message names the samples given, not the length after the centring's padding
    cfg = FrontendConfig(duration=1.0)
    with pytest.raises(
        ValueError, match=rf"audio of 30000 samples gives \d+ frames; the frontend needs {cfg.n_frames}"
    ):
        LogMel(cfg)(torch.zeros(1, 30000))


def test_band_statistics_is_dcase_normalizer():
    x = np.random.default_rng(1).normal(3, 2, size=(7, 4, 50)).astype(np.float16)
    mean, std = band_statistics(x, chunk=3)
    flat = x.astype(np.float64).transpose(1, 0, 2).reshape(4, -1)
    np.testing.assert_allclose(mean, flat.mean(axis=1), rtol=1e-6)
    np.testing.assert_allclose(std, flat.std(axis=1, ddof=1), rtol=1e-5)
