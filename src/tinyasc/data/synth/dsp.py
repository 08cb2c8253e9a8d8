"""Small, vectorised signal generators shared by the scene recipes and the device models."""

from __future__ import annotations

import hashlib
from functools import lru_cache

import numpy as np
from scipy import fft as sfft

SR = 44100
# Log-spaced anchors of every spectral envelope (Hz); envelopes are dB values at these points.
ANCHORS = np.array([31.5, 63, 125, 250, 500, 1000, 2000, 4000, 8000, 16000, 22050])


def rng_for(*parts: object) -> np.random.Generator:
    """A generator seeded by a stable hash of ``parts`` (same bytes on every machine and Python run)."""
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


@lru_cache(maxsize=64)
def rfft_freqs(n: int) -> np.ndarray:
    """Bin frequencies of an n-point rfft at SR (cached; treat as read-only)."""
    f = np.fft.rfftfreq(n, 1.0 / SR)
    f.flags.writeable = False
    return f


def envelope_gain(freqs: np.ndarray, db_at_anchors: np.ndarray) -> np.ndarray:
    """Linear gain per frequency from dB values at ANCHORS, interpolated on a log-frequency axis."""
    lf = np.log2(np.maximum(freqs, 20.0))
    return np.exp2(np.interp(lf, np.log2(ANCHORS), db_at_anchors) * (np.log2(10.0) / 20.0))


def spectral_noise(rng: np.random.Generator, n: int, gain_of_freq) -> np.ndarray:
    """Gaussian noise of n samples whose spectrum is scaled by ``gain_of_freq(freqs)``, unit RMS.

    Synthesised on the next FFT-friendly length and cropped (arbitrary lengths can be slow primes).
    """
    m = sfft.next_fast_len(n, real=True)
    # float32 / complex64 throughout: audio precision, half the memory traffic of float64.
    spec = np.empty(m // 2 + 1, dtype=np.complex64)
    spec.real = rng.standard_normal(m // 2 + 1, dtype=np.float32)
    spec.imag = rng.standard_normal(m // 2 + 1, dtype=np.float32)
    spec *= gain_of_freq(rfft_freqs(m)).astype(np.float32)
    x = sfft.irfft(spec, m)[:n]
    x *= np.float32(1.0 / (np.sqrt(np.mean(np.square(x, dtype=np.float64))) + 1e-12))
    return x


def shaped_noise(rng: np.random.Generator, n: int, db_at_anchors: np.ndarray) -> np.ndarray:
    """Gaussian noise of n samples with the given spectral envelope, unit RMS."""
    return spectral_noise(rng, n, lambda f: envelope_gain(f, db_at_anchors))


def bandpass_noise(rng: np.random.Generator, n: int, lo: float, hi: float) -> np.ndarray:
    """Noise limited to [lo, hi] Hz (brick-wall in the FFT domain), unit RMS."""
    return spectral_noise(rng, n, lambda f: ((f >= lo) & (f <= hi)).astype(float))


def control(rng: np.random.Generator, n: int, rate_hz: float, points_per_s: float = 50.0) -> np.ndarray:
    """Smooth random control signal in [0, 1] varying at about ``rate_hz``, interpolated to n samples."""
    n_ctrl = max(4, int(n / SR * points_per_s))
    width = max(1, int(points_per_s / max(rate_hz, 1e-3)))
    raw = rng.standard_normal(n_ctrl + 2 * width)
    kernel = np.hanning(2 * width + 1)
    smooth = np.convolve(raw, kernel / kernel.sum(), mode="valid")
    smooth = ((smooth - smooth.min()) / (np.ptp(smooth) + 1e-12)).astype(np.float32)
    idx, frac = _interp_grid(n_ctrl, n)
    return smooth[idx] + frac * (smooth[idx + 1] - smooth[idx])


@lru_cache(maxsize=16)
def _interp_grid(n_ctrl: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Left neighbour and fraction for linear interpolation of n_ctrl points onto n samples (cached)."""
    pos = np.linspace(0, n_ctrl - 1, n)
    idx = np.minimum(pos.astype(np.int64), n_ctrl - 2)
    frac = (pos - idx).astype(np.float32)
    idx.flags.writeable = False
    frac.flags.writeable = False
    return idx, frac


def harmonic_tone(f0: np.ndarray, n_harm: int, rolloff_db: float, rng: np.random.Generator) -> np.ndarray:
    """Sum of harmonics of a time-varying f0 (array, Hz), each harmonic -rolloff_db per octave."""
    # Phase accumulates in float64, then is wrapped to [0, 2 pi) so float32 sin/cos stay exact enough.
    phase = np.mod(np.cumsum(f0 * (2 * np.pi / SR)) + rng.uniform(0, 2 * np.pi), 2 * np.pi).astype(np.float32)
    # Chebyshev recurrence sin((k+1)p) = 2 cos(p) sin(kp) - sin((k-1)p): one sin and one cos in all;
    # float32 in place, since the recurrence only needs audio precision.
    two_cos = 2 * np.cos(phase)
    cur = np.sin(phase)
    prev = np.zeros_like(cur)
    out = np.zeros_like(cur)
    tmp = np.empty_like(cur)
    top = float(np.max(f0))
    for k in range(1, n_harm + 1):
        if top * k >= SR / 2 - 500:  # no aliasing
            break
        out += np.float32(10 ** (-rolloff_db * np.log2(k) / 20)) * cur
        np.multiply(two_cos, cur, out=tmp)
        tmp -= prev
        prev, cur, tmp = cur, tmp, prev
    return out


def decay(n: int, tau_s: float) -> np.ndarray:
    return np.exp(-np.arange(n) / (tau_s * SR))


def add_at(buf: np.ndarray, event: np.ndarray, onset: int) -> None:
    """Add ``event`` into ``buf`` from sample ``onset``, clipped at both ends."""
    if onset >= len(buf) or onset + len(event) <= 0:
        return
    start = max(onset, 0)
    stop = min(onset + len(event), len(buf))
    buf[start:stop] += event[start - onset : stop - onset]


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x**2)) + 1e-12)


def db(x: float) -> float:
    return 10 ** (x / 20)


def soft_limit(x: np.ndarray, ceiling: float = 0.9) -> np.ndarray:
    """tanh limiter above ``ceiling`` (a recorder's limiter): untouched when the peak is below it."""
    if np.max(np.abs(x)) <= ceiling:
        return x
    return np.tanh(x / ceiling) * ceiling
