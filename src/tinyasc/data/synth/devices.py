"""Recording devices, modelled after how TAU 2020 Mobile was made (reference section 3).

A is the reference (Soundman OKM II + Zoom F8): nearly flat. B, C and D are consumer devices with their
own frequency response, band limits, noise floor and automatic gain control. S1-S11 are simulated
devices, as the organisers made them from A: a fixed smooth equaliser curve (standing in for a device
impulse response) plus dynamic range compression. S4-S6, S7-S11 and D never appear in training and
are deliberately not copies of seen devices: their curves put peaks and notches elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import fft as sfft

from tinyasc.data.synth.dsp import SR, db, rfft_freqs, rng_for, soft_limit


@dataclass(frozen=True)
class Device:
    highpass: float  # Hz, 2nd order
    lowpass: float  # Hz, 4th order
    tilt_db_per_oct: float  # re 1 kHz
    bumps: tuple[tuple[float, float, float], ...]  # (centre Hz, gain dB, width octaves)
    noise_dbfs: float  # self-noise floor
    agc: tuple[float, float] | None = None  # (target dBFS, time constant s): consumer devices
    drc: tuple[float, float, float] | None = None  # (threshold dBFS, ratio, release s): simulated devices
    gain_db: float = 0.0


DEVICE_MODELS: dict[str, Device] = {
    "a": Device(20, 20000, 0.0, (), -90),
    "b": Device(180, 11000, -0.5, ((3000, 5, 1.0), (800, -3, 1.0)), -68, agc=(-24, 1.5)),
    "c": Device(120, 15000, 0.3, ((6000, 6, 0.7), (1200, -4, 0.8)), -64, agc=(-27, 3.0)),
    "d": Device(250, 9000, -1.0, ((1800, 7, 0.8), (5000, -6, 0.6)), -60, agc=(-22, 1.0)),
    "s1": Device(100, 16000, -0.8, ((2500, 4, 1.2),), -80, drc=(-30, 3.0, 0.2), gain_db=-2),
    "s2": Device(300, 12000, 0.5, ((900, 5, 1.0), (7000, -5, 1.0)), -78, drc=(-28, 2.0, 0.3)),
    "s3": Device(60, 18000, 1.0, ((4500, -6, 1.0),), -82, drc=(-34, 4.0, 0.15), gain_db=2),
    "s4": Device(400, 8000, 0.0, ((1500, 8, 0.7), (3500, -6, 0.6)), -74, drc=(-26, 5.0, 0.25)),
    "s5": Device(150, 14000, -1.5, ((250, 6, 1.0), (10000, 6, 0.8)), -76, drc=(-32, 2.5, 0.4)),
    "s6": Device(80, 10000, 1.5, ((600, -7, 0.8), (2200, 6, 0.5)), -72, drc=(-36, 6.0, 0.1), gain_db=3),
    "s7": Device(200, 13000, -1.2, ((1200, -8, 0.6), (5000, 5, 0.9)), -75, drc=(-29, 3.5, 0.3)),
    "s8": Device(350, 16000, 0.8, ((400, 7, 0.8),), -73, drc=(-33, 4.5, 0.2)),
    "s9": Device(90, 7000, -0.3, ((3000, 8, 0.5), (700, -5, 0.7)), -77, drc=(-27, 2.0, 0.5)),
    "s10": Device(50, 12500, 2.0, ((8000, -8, 0.7), (1800, 4, 1.2)), -79, drc=(-31, 3.0, 0.25)),
    "s11": Device(500, 15000, -2.0, ((2800, 9, 0.4),), -70, drc=(-35, 5.0, 0.15)),
}


@lru_cache(maxsize=64)
def response_for(name: str, n: int) -> np.ndarray:
    """|H(f)| of device ``name`` on the bins of an n-point rfft (cached; read-only)."""
    h = device_response(DEVICE_MODELS[name], rfft_freqs(n)).astype(np.float32)
    h.flags.writeable = False
    return h


def device_response(device: Device, freqs: np.ndarray) -> np.ndarray:
    """Magnitude response |H(f)| of the device's equaliser curve and band limits."""
    f = np.maximum(freqs, 1.0)
    hp = 1.0 / np.sqrt(1.0 + (device.highpass / f) ** 4)
    lp = 1.0 / np.sqrt(1.0 + (f / device.lowpass) ** 8)
    octs = np.log2(f / 1000.0)
    gain_db = device.tilt_db_per_oct * octs
    for centre, g, width in device.bumps:
        gain_db = gain_db + g * np.exp(-0.5 * (np.log2(f / centre) / (width / 2)) ** 2)
    return hp * lp * 10 ** (gain_db / 20)


def _frame_db(x: np.ndarray, hop: int) -> np.ndarray:
    n = len(x) // hop
    frames = x[: n * hop].reshape(n, hop)
    return 10 * np.log10(np.mean(frames**2, axis=1) + 1e-12)


def _to_samples(per_frame: np.ndarray, hop: int, n: int) -> np.ndarray:
    centres = (np.arange(len(per_frame)) + 0.5) * hop
    return np.interp(np.arange(n), centres, per_frame)


def _compress(x: np.ndarray, threshold: float, ratio: float, release: float) -> np.ndarray:
    """Feed-forward compressor on 10 ms frames, instant attack and exponential release."""
    hop = SR // 100
    level = _frame_db(x, hop)
    target = -np.maximum(level - threshold, 0.0) * (1.0 - 1.0 / ratio)
    alpha = np.exp(-hop / (release * SR))
    gain = np.empty_like(target)
    g = 0.0
    for i, t in enumerate(target):
        g = t if t < g else alpha * g + (1 - alpha) * t
        gain[i] = g
    makeup = -0.5 * float(np.mean(gain))
    return x * 10 ** ((_to_samples(gain, hop, len(x)) + makeup) / 20)


def _agc(x: np.ndarray, target: float, tau: float) -> np.ndarray:
    """Slow automatic gain control pulling the smoothed level toward ``target`` (within +-20 dB)."""
    hop = SR // 100
    level = _frame_db(x, hop)
    width = max(1, int(tau * 100))
    kernel = np.ones(width) / width
    padded = np.concatenate([np.full(width, level[0]), level])
    smooth = np.convolve(padded, kernel, mode="full")[width : width + len(level)]
    gain = np.clip(target - smooth, -20, 20)
    return x * 10 ** (_to_samples(gain, hop, len(x)) / 20)


def apply_device(x: np.ndarray, name: str, key: str, seed: int) -> np.ndarray:
    """The recording of source ``x`` by device ``name``; ``key`` seeds the device's noise for this file."""
    dev = DEVICE_MODELS[name]
    n = len(x)
    # Self-noise enters before the band limits, so it shares the device's response; white noise of
    # RMS sigma has complex rfft bins of variance n * sigma^2.
    rng = rng_for(seed, "device-noise", name, key)
    sigma = db(dev.noise_dbfs) * np.sqrt(n / 2)
    spec = sfft.rfft(x.astype(np.float32))
    spec.real += sigma * rng.standard_normal(n // 2 + 1, dtype=np.float32)
    spec.imag += sigma * rng.standard_normal(n // 2 + 1, dtype=np.float32)
    spec *= response_for(name, n)
    y = sfft.irfft(spec, n)
    if dev.agc is not None:
        y = _agc(y, *dev.agc)
    if dev.drc is not None:
        y = _compress(y, *dev.drc)
    y *= db(dev.gain_db)
    return soft_limit(y)
