"""Sound events of urban scenes. Each generator returns (onset sample, signal) at about unit RMS.

Events are short arrays rendered only over their own span, so a 10 s clip with dozens of events
stays cheap. Shapes are deliberately simple physical caricatures (a Doppler glide for a passing car,
a click train for rail joints), not recordings.
"""

from __future__ import annotations

import numpy as np

from tinyasc.data.synth.dsp import SR, bandpass_noise, control, decay, harmonic_tone, rms, spectral_noise


def _norm(x: np.ndarray) -> np.ndarray:
    return x / rms(x)


def vehicle_pass(rng: np.random.Generator, n: int, distance: float = 1.0) -> tuple[int, np.ndarray]:
    """A car or van passing: engine harmonics with a Doppler glide and tyre noise under a bell envelope."""
    dur = rng.uniform(3.0, 7.0) * (0.7 + 0.3 * distance)
    m = int(dur * SR)
    t = np.arange(m) / SR - dur / 2
    w = rng.uniform(0.4, 1.2) * distance
    bell = 1.0 / (1.0 + (t / w) ** 2)
    speed = rng.uniform(8, 20)  # m/s
    f0 = rng.uniform(25, 70)
    doppler = 1.0 + (speed / 343.0) * -np.tanh(t / w)
    engine = harmonic_tone(f0 * doppler, 10, 5.0, rng)
    tyre = bandpass_noise(rng, m, 300, 3000 / distance)
    sig = (0.6 * engine + tyre) * bell
    return int(rng.integers(-m // 3, n)), _norm(sig)


def train_arrival(rng: np.random.Generator, n: int) -> tuple[int, np.ndarray]:
    """A train entering a station: rising then falling low rumble, then a brake squeal."""
    dur = rng.uniform(6.0, 9.0)
    m = int(dur * SR)
    t = np.linspace(0, 1, m)
    rumble = bandpass_noise(rng, m, 30, 900) * np.sin(np.pi * t) ** 2
    sq_f = rng.uniform(2500, 4500)
    squeal_env = np.clip((t - 0.55) / 0.1, 0, 1) * np.clip((0.9 - t) / 0.1, 0, 1)
    squeal = np.sin(2 * np.pi * np.cumsum(sq_f * (1 + 0.01 * np.sin(2 * np.pi * 5 * t))) / SR)
    return int(rng.integers(-m // 2, n)), _norm(rumble + 0.4 * squeal * squeal_env)


def rail_clicks(rng: np.random.Generator, n: int) -> tuple[int, np.ndarray]:
    """Wheels over a rail joint: two pairs of clicks (two bogies)."""
    m = int(1.2 * SR)
    sig = np.zeros(m)
    gap = rng.uniform(0.08, 0.16)
    bogie = rng.uniform(0.4, 0.8)
    click_len = int(0.03 * SR)
    for t0 in (0.0, gap, bogie, bogie + gap):
        i = int(t0 * SR)
        c = bandpass_noise(rng, click_len, 200, 5000) * decay(click_len, 0.006)
        sig[i : i + click_len] += c[: max(0, min(click_len, m - i))]
    return int(rng.integers(0, n)), _norm(sig)


def chime(rng: np.random.Generator, n: int) -> tuple[int, np.ndarray]:
    """Door or announcement chime: two or three decaying bell tones."""
    base = rng.choice([523.3, 587.3, 659.3, 698.5, 784.0]) * rng.uniform(0.98, 1.02)
    ratios = [1.0, 0.8] if rng.random() < 0.5 else [1.0, 1.26, 1.5]
    note = int(0.45 * SR)
    sig = np.zeros(note * len(ratios) + SR)
    t = np.arange(note + SR) / SR
    for k, r in enumerate(ratios):
        f = base * r
        tone = (np.sin(2 * np.pi * f * t) + 0.3 * np.sin(2 * np.pi * 2.76 * f * t)) * np.exp(-t / 0.5)
        sig[k * note : k * note + len(t)] += tone
    return int(rng.integers(0, n)), _norm(sig)


def speech_like(
    rng: np.random.Generator,
    m: int,
    syllable_hz: float = 4.5,
    band: tuple[float, float] = (0, SR / 2),
    voices: int = 1,
) -> np.ndarray:
    """Formant-shaped noise gated at a syllable rate: one voice, or babble of ``voices`` streams.

    ``band`` limits it (a public-address loudspeaker passes about 300-4000 Hz). Babble streams share
    one noise excitation, circularly shifted by seconds per stream, which decorrelates them at the
    cost of a single FFT; each stream has its own syllable gate."""
    peaks = ((rng.uniform(450, 800), 150, 1.0), (rng.uniform(1100, 1900), 250, 0.6), (2600, 400, 0.3))

    def voice(f: np.ndarray) -> np.ndarray:
        formants = sum(g * np.exp(-0.5 * ((f - fc) / bw) ** 2) for fc, bw, g in peaks)
        inside = (f >= band[0]) & (f <= band[1])
        return np.clip(f / 120.0, 0, 1) * (formants + 0.02) * np.where(inside, 1.0, 0.05)

    x = spectral_noise(rng, m, voice)
    out = x * control(rng, m, syllable_hz, points_per_s=100) ** 2
    for _ in range(voices - 1):
        shift = int(rng.integers(SR, max(SR + 1, m - SR)))
        out += (
            np.roll(x, shift) * control(rng, m, syllable_hz * rng.uniform(0.8, 1.25), points_per_s=100) ** 2
        )
    return out


def announcement(rng: np.random.Generator, n: int) -> tuple[int, np.ndarray]:
    """A public-address voice: band-limited (PA loudspeaker), 2-5 s."""
    m = int(rng.uniform(2.0, 5.0) * SR)
    voice = speech_like(rng, m, rng.uniform(3.5, 5.5), band=(300, 4000))
    return int(rng.integers(0, n)), _norm(voice)


def footsteps(rng: np.random.Generator, n: int) -> tuple[int, np.ndarray]:
    """A walker passing: 4-10 steps at about 1.8 Hz, hard-soled clicks."""
    steps = int(rng.integers(4, 11))
    period = rng.uniform(0.45, 0.65)
    m = int((steps * period + 0.2) * SR)
    sig = np.zeros(m)
    click_len = int(0.04 * SR)
    hi = rng.uniform(2000, 8000)
    for k in range(steps):
        i = int((k * period + rng.normal(0, 0.02)) * SR)
        i = min(max(i, 0), m - click_len)
        sig[i : i + click_len] += bandpass_noise(rng, click_len, 150, hi) * decay(click_len, 0.01)
    env = np.sin(np.pi * np.linspace(0, 1, m))
    return int(rng.integers(-m // 2, n)), _norm(sig * env)


def bird(rng: np.random.Generator, n: int) -> tuple[int, np.ndarray]:
    """A bird phrase: 3-8 frequency-modulated chirps between 2 and 7 kHz."""
    chirps = int(rng.integers(3, 9))
    f_lo = rng.uniform(2000, 4000)
    f_hi = f_lo * rng.uniform(1.2, 1.8)
    gap = rng.uniform(0.08, 0.2)
    clen = int(rng.uniform(0.04, 0.12) * SR)
    m = int(chirps * (gap * SR + clen))
    sig = np.zeros(m + clen)
    t = np.arange(clen) / clen
    for k in range(chirps):
        f = f_hi + (f_lo - f_hi) * t if rng.random() < 0.6 else f_lo + (f_hi - f_lo) * t
        c = np.sin(2 * np.pi * np.cumsum(f) / SR) * np.sin(np.pi * t) ** 2
        i = int(k * (gap * SR + clen))
        sig[i : i + clen] += c
    return int(rng.integers(0, n)), _norm(sig)


def suitcase(rng: np.random.Generator, n: int) -> tuple[int, np.ndarray]:
    """A rolling suitcase: rumble with wheel clicks at 6-12 Hz over 2-5 s."""
    m = int(rng.uniform(2.0, 5.0) * SR)
    rate = rng.uniform(6, 12)
    t = np.arange(m) / SR
    clicks = (np.sin(2 * np.pi * rate * t) > 0.95).astype(float)
    sig = bandpass_noise(rng, m, 80, 2500) * (0.5 + clicks) * np.sin(np.pi * t / t[-1])
    return int(rng.integers(-m // 3, n)), _norm(sig)


def door(rng: np.random.Generator, n: int) -> tuple[int, np.ndarray]:
    """Vehicle doors: a pneumatic hiss followed by a thud."""
    hiss_len = int(rng.uniform(0.4, 1.0) * SR)
    thud_len = int(0.25 * SR)
    hiss = bandpass_noise(rng, hiss_len, 2000, 12000) * np.hanning(hiss_len)
    thud = bandpass_noise(rng, thud_len, 40, 400) * decay(thud_len, 0.05) * 3
    return int(rng.integers(0, n)), _norm(np.concatenate([hiss, thud]))


def music_phrase(rng: np.random.Generator, m: int) -> np.ndarray:
    """Background music: a random diatonic melody with harmonics over a bass line, at tempo 90-130."""
    beat = 60.0 / rng.uniform(90, 130)
    note_len = int(beat * SR / 2)
    scale = np.array([0, 2, 4, 5, 7, 9, 11, 12])
    root = rng.uniform(196, 330)
    out = np.zeros(m)
    env = np.exp(-np.arange(note_len) / (0.25 * SR))
    t = np.arange(note_len) / SR
    for i in range(0, m - note_len, note_len):
        f = root * 2 ** (rng.choice(scale) / 12)
        out[i : i + note_len] += env * (np.sin(2 * np.pi * f * t) + 0.4 * np.sin(4 * np.pi * f * t))
        if (i // note_len) % 4 == 0:
            fb = root / 2 * 2 ** (rng.choice(scale[:5]) / 12)
            out[i : i + note_len] += 0.7 * np.sin(2 * np.pi * fb * t)
    return out


EVENTS = {
    "vehicle": vehicle_pass,
    "train_arrival": train_arrival,
    "rail": rail_clicks,
    "chime": chime,
    "announcement": announcement,
    "footsteps": footsteps,
    "bird": bird,
    "suitcase": suitcase,
    "door": door,
}
