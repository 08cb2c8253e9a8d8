"""Waveform-side augmentation of training batches (B, samples): time roll, gain, device impulse responses.

- ``TimeRoll``: every clip is rolled circularly by a random shift of up to ``max_shift`` samples either
  way (CP-JKU rolled waveforms by up to 4,000 samples).
- ``Gain``: every clip is scaled by a random gain, uniform in decibels within ``+-max_db``.
- ``DeviceIR`` (DIR; Morocutti et al. 2023, reference ``top_systems.md`` 5.2): with probability ``p``
  a device-A clip is convolved with a random device impulse response ('full' convolution, truncated to
  the clip's length). The responses come from a folder of WAV files (e.g. the MicIRP set CP-JKU used)
  or, out of the box, from ``procedural_irs``.

``procedural_irs`` designs microphone-like responses, deterministic from a seed: a log-magnitude
response of a high-pass (corner 50-600 Hz, 12 dB/octave), a low-pass (corner 4-18 kHz, 12-24 dB/octave),
2-5 resonances or dips (+-3 to 10 dB, 0.1-0.6 octaves wide) and a tilt (+-3 dB/decade), made minimum
phase through the folded real cepstrum, plus one enclosure reflection (0.2-3 ms, gain 0.05-0.3);
``length`` samples, unit energy.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from tinyasc.data.audio import AudioError, read_audio, resample


class TimeRoll(nn.Module):
    def __init__(self, max_shift: int):
        super().__init__()
        self.max_shift = max_shift

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.max_shift <= 0:
            return x
        b, n = x.shape
        shift = torch.randint(-self.max_shift, self.max_shift + 1, (b, 1), device=x.device)
        idx = (torch.arange(n, device=x.device)[None, :] - shift) % n
        return torch.gather(x, 1, idx)


class Gain(nn.Module):
    def __init__(self, max_db: float):
        super().__init__()
        self.max_db = max_db

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.max_db <= 0:
            return x
        db = (torch.rand(x.shape[0], 1, device=x.device) * 2 - 1) * self.max_db
        return x * torch.pow(10.0, db / 20)


def fft_convolve(x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """Per-row 'full' convolution of x (B, N) with h (B, L), truncated to the first N samples."""
    n = x.shape[-1] + h.shape[-1] - 1
    size = 1 << (n - 1).bit_length()
    y = torch.fft.irfft(torch.fft.rfft(x, size) * torch.fft.rfft(h, size), size)
    return y[..., : x.shape[-1]]


class DeviceIR(nn.Module):
    def __init__(self, irs: list[np.ndarray], p: float = 0.6):
        super().__init__()
        if not irs:
            raise ValueError("device IR augmentation: no impulse responses")
        length = max(len(h) for h in irs)
        bank = np.zeros((len(irs), length), dtype=np.float32)
        for i, h in enumerate(irs):
            bank[i, : len(h)] = h
        self.register_buffer("bank", torch.from_numpy(bank), persistent=False)
        self.p = p

    def forward(self, x: torch.Tensor, is_reference: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p <= 0:
            return x
        b = x.shape[0]
        apply = is_reference.to(x.device) & (torch.rand(b, device=x.device) < self.p)
        if not apply.any():
            return x
        pick = torch.randint(0, len(self.bank), (int(apply.sum()),), device=x.device)
        out = x.clone()
        out[apply] = fft_convolve(x[apply], self.bank[pick])
        return out


def minimum_phase(log_mag: np.ndarray, n_fft: int) -> np.ndarray:
    """Real minimum-phase impulse response (n_fft,) of a natural-log magnitude on rfft bins."""
    full = np.concatenate([log_mag, log_mag[-2:0:-1]])
    cep = np.fft.ifft(full).real
    fold = np.zeros(n_fft)
    fold[0] = cep[0]
    fold[1 : n_fft // 2] = 2 * cep[1 : n_fft // 2]
    fold[n_fft // 2] = cep[n_fft // 2]
    return np.fft.ifft(np.exp(np.fft.fft(fold))).real


def procedural_irs(
    count: int = 32, sample_rate: int = 44100, length: int = 1024, seed: int = 0
) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    n_fft = 4 * length
    f = np.fft.rfftfreq(n_fft, 1 / sample_rate)
    f[0] = f[1] / 2
    octaves = np.log2(f)
    irs = []
    for _ in range(count):
        lo = rng.uniform(50, 600)
        hi = rng.uniform(4000, min(18000, 0.45 * sample_rate))
        slope_hi = rng.choice([12.0, 18.0, 24.0])
        db = -12 * np.maximum(0, np.log2(lo / f)) - slope_hi * np.maximum(0, np.log2(f / hi))
        for _ in range(rng.integers(2, 6)):
            centre = rng.uniform(np.log2(200), np.log2(min(12000, 0.45 * sample_rate)))
            width = rng.uniform(0.1, 0.6)
            db += rng.choice([-1, 1]) * rng.uniform(3, 10) * np.exp(-0.5 * ((octaves - centre) / width) ** 2)
        db += rng.uniform(-3, 3) * np.log10(f / 1000)
        h = minimum_phase(db / 20 * np.log(10), n_fft)[:length]
        delay = int(rng.uniform(0.0002, 0.003) * sample_rate)
        if 0 < delay < length:
            h[delay:] += rng.uniform(0.05, 0.3) * h[: length - delay]
        irs.append((h / np.sqrt(np.sum(h**2))).astype(np.float32))
    return irs


def load_irs(folder: str | Path, sample_rate: int, max_length: int | None = None) -> list[np.ndarray]:
    """Every audio file in ``folder`` (sorted) as a mono IR at ``sample_rate``, unit energy."""
    folder = Path(folder)
    if not folder.is_dir():
        raise AudioError(f"{folder}: impulse-response folder not found")
    files = sorted(
        p for p in folder.iterdir() if p.suffix.lower() in (".wav", ".flac", ".ogg", ".aiff", ".aif")
    )
    if not files:
        raise AudioError(f"{folder}: no impulse responses (.wav, .flac, .ogg, .aiff)")
    irs = []
    for p in files:
        data, sr = read_audio(p)
        h = resample(data.mean(axis=1), sr, sample_rate)
        if max_length:
            h = h[:max_length]
        energy = float(np.sum(h.astype(np.float64) ** 2))
        if not np.isfinite(energy) or energy == 0:
            raise AudioError(f"{p}: impulse response is silent or not finite")
        irs.append((h / np.sqrt(energy)).astype(np.float32))
    return irs
