"""Log-mel frontend as the DCASE 2021 baseline computes it (reference section 1.1), in torch.

Baseline recipe (dcase_util MelExtractor over librosa): 44.1 kHz mono; magnitude STFT with n_fft 2048,
a 1764-sample (40 ms) periodic Hamming window, hop 882 (20 ms), centred frames; Slaney mel filterbank,
40 bands over 0-22050 Hz applied to the *magnitude*; natural log with eps = numpy.spacing(1); the first
500 of 501 frames. Centre padding is 'reflect', the default of the librosa releases the 2021 baseline
ran on (librosa >= 0.10 changed its default to zeros); it is a config field.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tinyasc.config import FrontendConfig


def hz_to_mel_slaney(f: np.ndarray) -> np.ndarray:
    """Slaney's auditory toolbox mel scale: linear below 1 kHz, logarithmic above."""
    f = np.asarray(f, dtype=np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
    return np.where(
        f >= min_log_hz, min_log_mel + np.log(np.maximum(f, 1e-10) / min_log_hz) / logstep, f / f_sp
    )


def mel_to_hz_slaney(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)


def hz_to_mel_htk(f: np.ndarray) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def mel_to_hz_htk(m: np.ndarray) -> np.ndarray:
    return 700.0 * (10.0 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0)


def mel_filterbank(
    sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float, htk: bool = False, norm: str | None = "slaney"
) -> np.ndarray:
    """Triangular mel filters (n_mels, 1 + n_fft // 2), the construction of librosa.filters.mel."""
    to_mel, to_hz = (hz_to_mel_htk, mel_to_hz_htk) if htk else (hz_to_mel_slaney, mel_to_hz_slaney)
    fft_freqs = np.linspace(0.0, sr / 2.0, 1 + n_fft // 2)
    mel_f = to_hz(np.linspace(to_mel(fmin), to_mel(fmax), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    if norm == "slaney":
        weights *= (2.0 / (mel_f[2 : n_mels + 2] - mel_f[:n_mels]))[:, None]
    elif norm is not None:
        raise ValueError(f"frontend.mel_norm: {norm!r}; expected 'slaney' or null")
    return weights


def _window(name: str, length: int) -> torch.Tensor:
    # Periodic windows: scipy.signal.get_window(..., fftbins=True) == hamming(sym=False) in the baseline.
    if name == "hamming":
        return torch.hamming_window(length, periodic=True, dtype=torch.float64)
    if name == "hann":
        return torch.hann_window(length, periodic=True, dtype=torch.float64)
    raise ValueError(f"frontend.window: {name!r}; expected 'hamming' or 'hann'")


def band_groups(fb: np.ndarray, size: int = 16) -> list[tuple[int, int, int, int]]:
    """``(first band, end band, first bin, end bin)`` of each ``size`` consecutive mel bands and the
    frequency bins their filters touch: the filterbank product taken group by group skips the zeros
    of the dense one (it keeps 7% of the dense products for 256 bands of a 2048-point FFT, 30% for
    40; ``benchmarks/frontend_speed.py`` times the frontend with and without it), and differs from it
    by float rounding only."""
    groups = []
    for b0 in range(0, fb.shape[0], size):
        b1 = min(b0 + size, fb.shape[0])
        touched = np.flatnonzero((fb[b0:b1] != 0).any(axis=0))
        # a group whose filters touch no bin takes one bin of zero weights: the floor, as the dense product
        lo, hi = (int(touched[0]), int(touched[-1]) + 1) if touched.size else (0, 1)
        groups.append((b0, b1, lo, hi))
    return groups


def reflect_pad(audio: torch.Tensor, pad: int) -> torch.Tensor:
    """``F.pad(audio, (pad, pad), mode="reflect")`` of (..., samples) audio, as ``torch.stft`` centres
    its frames, written as the two mirrored ends around the signal: the same samples, without the
    reflection-pad kernel, which took about a tenth of a 10-s clip's log-mel on the project's CPU
    (``benchmarks/frontend_speed.py``). Needs more than ``pad`` samples, as reflection does."""
    return torch.cat([audio[..., 1 : pad + 1].flip(-1), audio, audio[..., -pad - 1 : -1].flip(-1)], dim=-1)


def magnitude(spec: torch.Tensor, power: float = 1.0) -> torch.Tensor:
    """``spec.abs() ** power`` of a complex STFT, from its real and imaginary parts.

    The complex ``abs()`` runs a scalar ``hypot`` per bin on the CPU, about 3x the time of these
    vectorised products on the project's CPU (``benchmarks/frontend_speed.py`` times the frontend
    with and without them); the two agree to 1 ulp, and the power 2 skips the square root."""
    re, im = spec.real, spec.imag
    squared = torch.addcmul(re * re, im, im)
    if power == 2.0:
        return squared
    if power == 1.0:
        return squared.sqrt_()
    return squared ** (power / 2)


class LogMel(nn.Module):
    """audio (B, T) float32 at ``cfg.sample_rate`` -> log-mel (B, 1, n_mels, frames), not normalised."""

    def __init__(self, cfg: FrontendConfig):
        super().__init__()
        self.cfg = cfg
        fmax = cfg.fmax if cfg.fmax is not None else cfg.sample_rate / 2
        fb = mel_filterbank(cfg.sample_rate, cfg.n_fft, cfg.n_mels, cfg.fmin, fmax, cfg.htk, cfg.mel_norm)
        self.register_buffer("window", _window(cfg.window, cfg.win_length).float(), persistent=False)
        self.register_buffer("mel_fb", torch.from_numpy(fb).float(), persistent=False)
        self.bands = band_groups(fb)

    def log_mel(self, spec: torch.Tensor) -> torch.Tensor:
        """Complex STFT frames (..., freqs, frames) -> log-mel (..., n_mels, frames): magnitude to the
        frontend's power, the mel filterbank, the log with its floor."""
        mag = magnitude(spec, self.cfg.power)
        mel = torch.cat(
            [torch.matmul(self.mel_fb[b0:b1, lo:hi], mag[..., lo:hi, :]) for b0, b1, lo, hi in self.bands],
            dim=-2,
        )
        return torch.log(mel + self.cfg.log_eps)

    def stft(self, audio: torch.Tensor, center: bool) -> torch.Tensor:
        """Complex STFT frames (..., freqs, frames) with the frontend's window and hop."""
        cfg = self.cfg
        return torch.stft(
            audio,
            n_fft=cfg.n_fft,
            hop_length=cfg.hop_length,
            win_length=cfg.win_length,
            window=self.window,
            center=center,
            pad_mode=cfg.pad_mode,
            return_complex=True,
        )

    def centre(self, audio: torch.Tensor) -> torch.Tensor:
        """(..., samples) audio padded by ``n_fft // 2`` on each side as ``torch.stft(center=True)``
        pads it (``frontend.pad_mode``); a reflection by concatenation, bit-equal and faster."""
        pad = self.cfg.n_fft // 2
        if self.cfg.pad_mode == "reflect" and audio.shape[-1] > pad:
            return reflect_pad(audio, pad)
        return F.pad(audio[None], (pad, pad), mode=self.cfg.pad_mode)[0]

    def spectrum(self, audio: torch.Tensor) -> torch.Tensor:
        """The STFT, its frames centred when the frontend says so."""
        return self.stft(self.centre(audio), center=False) if self.cfg.center else self.stft(audio, False)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        logmel = self.log_mel(self.spectrum(audio))
        frames = cfg.n_frames
        if logmel.shape[-1] < frames:
            raise ValueError(
                f"audio of {audio.shape[-1]} samples gives {logmel.shape[-1]} frames; "
                f"the frontend needs {frames} (pad the clip to {cfg.clip_samples} samples)"
            )
        logmel = logmel[..., :frames]
        return logmel.unsqueeze(1)


class SlidingLogMel:
    """The log-mel of a clip-long window that moves by ``hop`` samples, computing only what changed.

    A frame whose samples lie wholly inside the clip (no centre padding) is the same frame, ``hop /
    hop_length`` places earlier, in the next window; such frames are kept, and each step computes only
    the frames near the two edges (which the centre padding of the new window changes) and the frames
    of the new samples. A frame is computed exactly as ``LogMel`` computes it (the window padded the
    same way, the same STFT, filterbank and log), so a window's features equal ``LogMel``'s of the same
    samples to float rounding (``tests/test_stream.py``). Needs the window to be the whole clip and the
    hop a multiple of the frontend's hop; ``usable`` says whether it applies.
    """

    def __init__(self, logmel: LogMel, hop: int):
        cfg = logmel.cfg
        self.logmel, self.hop, self.cfg = logmel, hop, cfg
        self.shift = hop // cfg.hop_length
        self.pad = cfg.n_fft // 2 if cfg.center else 0
        n = cfg.clip_samples
        every = 1 + (n + 2 * self.pad - cfg.n_fft) // cfg.hop_length
        # interior frames: [first, last) touch no padding, so they move unchanged with the window
        self.first = -(-self.pad // cfg.hop_length)
        self.last = min(every, (n + self.pad - cfg.n_fft) // cfg.hop_length + 1)
        self.frames = cfg.n_frames
        self.previous: torch.Tensor | None = None  # (n_mels, frames) of the last window
        self.computed = 0  # frames computed so far (the saving, for tests and benchmarks)

    @staticmethod
    def usable(cfg: FrontendConfig, window: int, hop: int) -> bool:
        return window == cfg.clip_samples and hop % cfg.hop_length == 0 and hop < window

    def _frames(self, padded: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
        """Log-mel frames [lo, hi) of the padded window, (n_mels, hi - lo)."""
        cfg = self.cfg
        if hi <= lo:
            return self.logmel.mel_fb.new_zeros(cfg.n_mels, 0)
        seg = padded[lo * cfg.hop_length : (hi - 1) * cfg.hop_length + cfg.n_fft]
        spec = self.logmel.stft(seg[None], center=False)[0]
        self.computed += hi - lo
        return self.logmel.log_mel(spec)

    def __call__(self, window: torch.Tensor) -> torch.Tensor:
        """window (clip_samples,) -> (1, 1, n_mels, frames), the window ``hop`` samples after the last."""
        padded = self.logmel.centre(window) if self.pad else window
        if self.previous is None:
            out = self._frames(padded, 0, self.frames)
        else:
            # kept: interior frames of the last window, shift places later, still interior and wanted
            keep_lo, keep_hi = self.first, min(self.last, self.frames) - self.shift
            if keep_hi > keep_lo:
                parts = [
                    self._frames(padded, 0, keep_lo),
                    self.previous[:, keep_lo + self.shift : keep_hi + self.shift],
                    self._frames(padded, keep_hi, self.frames),
                ]
                out = torch.cat([p for p in parts if p.shape[1]], dim=1)
            else:
                out = self._frames(padded, 0, self.frames)
        self.previous = out
        return out[None, None]


class Normalizer(nn.Module):
    """Per-mel-band standardisation with mean and std of the training fold, stored with the model."""

    def __init__(self, n_mels: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(n_mels))
        self.register_buffer("std", torch.ones(n_mels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, 1, n_mels, frames)."""
        return (x - self.mean[:, None]) / self.std[:, None]


def band_statistics(features: np.ndarray, chunk: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased std per mel band over all frames of all clips; features: (N, n_mels, frames).

    dcase_util Normalizer: mean = S1/N, std = sqrt((N*S2 - S1^2) / (N*(N-1))), accumulated in float64.
    """
    s1 = np.zeros(features.shape[1])
    s2 = np.zeros(features.shape[1])
    n = 0
    for i in range(0, len(features), chunk):
        block = np.asarray(features[i : i + chunk], dtype=np.float64)
        s1 += block.sum(axis=(0, 2))
        s2 += (block**2).sum(axis=(0, 2))
        n += block.shape[0] * block.shape[2]
    mean = s1 / n
    std = np.sqrt(np.maximum(n * s2 - s1**2, 0.0) / (n * (n - 1)))
    return mean.astype(np.float32), np.maximum(std, 1e-8).astype(np.float32)
