"""Ten scene recipes and the renderer of one underlying scene segment (before any device).

Structure at three levels, each from its own seeded generator:
- city: shifts the recipe (spectral tilt, level, per-scene event rates);
- location: a persistent character (room reverberation, background level and colour, event mixture,
  engine pitch, whether music plays);
- segment: draws the events and the textures of one 10 s excerpt.

Confusable groups share ingredients with overlapping parameter ranges, as in the real data:
bus / tram / metro (engine drones, door chimes, babble), street_pedestrian / public_square /
street_traffic (vehicles, footsteps, babble at different rates), airport / shopping_mall /
metro_station (reverberant halls with babble and announcements).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from scipy import fft as sfft

from tinyasc.data.synth.dsp import (
    ANCHORS,
    SR,
    add_at,
    bandpass_noise,
    control,
    db,
    harmonic_tone,
    rng_for,
    shaped_noise,
    soft_limit,
)
from tinyasc.data.synth.events import EVENTS, music_phrase, speech_like

# How far a location moves away from its scene's recipe (dB of background colour, event-rate spread).
# These set the corpus difficulty; see the calibration section of the README.
LOCATION_COLOUR_DB = 3.0
LOCATION_RATE_SPREAD = 0.6
CITY_TILT_DB_PER_OCT = 0.8


@dataclass(frozen=True)
class Drone:
    """A continuous engine or motor: harmonics of f0 that drifts with acceleration."""

    f0: tuple[float, float]
    harmonics: int
    rolloff_db: float
    level_db: float
    sweep: float  # relative f0 excursion with acceleration


@dataclass(frozen=True)
class SceneRecipe:
    background_db: tuple[float, ...]  # spectral envelope at ANCHORS
    level_dbfs: float  # background RMS
    modulation: tuple[float, float]  # (rate Hz, depth 0..1) of slow level modulation
    rt60: tuple[float, float]  # room reverberation range (s); (0, 0) = none
    events: dict[str, tuple[float, float]] = field(default_factory=dict)  # name -> (per 10 s, dB re bg)
    drones: tuple[Drone, ...] = ()
    babble: tuple[int, int, float] | None = None  # (min talkers, max talkers, dB re bg)
    music: tuple[float, float] | None = None  # (probability a location plays music, dB re bg)
    wind: tuple[float, float] | None = None  # (probability, dB re bg)


RECIPES: dict[str, SceneRecipe] = {
    "airport": SceneRecipe(
        (-12, -6, -3, 0, 0, -2, -5, -9, -15, -24, -34),
        -30,
        (0.1, 0.2),
        (1.0, 2.2),
        {"announcement": (1.0, 2), "chime": (0.6, 0), "suitcase": (2.0, -2), "footsteps": (2.0, -4)},
        (Drone((45, 65), 6, 8, -14, 0.02),),
        (6, 20, 0),
        (0.2, -10),
    ),
    "bus": SceneRecipe(
        (0, 3, 4, 2, -2, -6, -10, -14, -20, -28, -38),
        -22,
        (0.15, 0.3),
        (0.15, 0.4),
        {"chime": (0.4, -2), "door": (0.6, -2), "announcement": (0.3, -4), "vehicle": (0.6, -10)},
        (Drone((22, 40), 16, 4, 2, 0.25),),
        (1, 5, -6),
    ),
    "metro": SceneRecipe(
        (-4, 0, 2, 2, 0, -2, -4, -7, -12, -20, -30),
        -18,
        (0.2, 0.35),
        (0.2, 0.5),
        {"rail": (5.0, 0), "announcement": (0.5, -3), "chime": (0.4, -4), "door": (0.4, -4)},
        (Drone((30, 50), 10, 5, -2, 0.3), Drone((600, 1500), 3, 6, -10, 0.4)),
        (1, 6, -10),
    ),
    "metro_station": SceneRecipe(
        (-8, -4, -2, 0, 0, -2, -5, -9, -14, -22, -32),
        -27,
        (0.1, 0.3),
        (1.2, 2.6),
        {"train_arrival": (0.7, 6), "announcement": (0.8, 1), "chime": (0.5, -1), "footsteps": (3.0, -3)},
        (Drone((45, 65), 4, 8, -16, 0.02),),
        (3, 12, -2),
    ),
    "park": SceneRecipe(
        (-6, -4, -4, -6, -8, -10, -12, -14, -18, -26, -36),
        -36,
        (0.1, 0.3),
        (0.0, 0.0),
        {"bird": (5.0, 6), "vehicle": (0.5, -8), "footsteps": (0.8, -4)},
        (),
        (0, 3, -8),
        None,
        (0.6, 0),
    ),
    "public_square": SceneRecipe(
        (-6, -3, -2, -2, -3, -4, -7, -10, -15, -23, -33),
        -30,
        (0.1, 0.25),
        (0.1, 0.5),
        {"vehicle": (1.5, -2), "footsteps": (2.0, -2), "bird": (1.0, 0), "chime": (0.1, -10)},
        (),
        (3, 10, -3),
        (0.15, -8),
        (0.3, -3),
    ),
    "shopping_mall": SceneRecipe(
        (-12, -7, -3, -1, 0, -1, -4, -8, -14, -22, -32),
        -28,
        (0.1, 0.2),
        (0.8, 1.8),
        {"footsteps": (3.0, -3), "announcement": (0.4, -2), "chime": (0.3, -4), "suitcase": (0.3, -6)},
        (Drone((45, 65), 6, 8, -14, 0.02),),
        (6, 20, 0),
        (0.8, -6),
    ),
    "street_pedestrian": SceneRecipe(
        (-6, -3, -2, -2, -2, -3, -6, -10, -15, -23, -33),
        -28,
        (0.15, 0.25),
        (0.1, 0.6),
        {"footsteps": (4.0, 0), "vehicle": (1.2, -4), "bird": (0.3, -4), "suitcase": (0.3, -6)},
        (),
        (4, 14, -1),
        (0.15, -8),
        (0.1, -6),
    ),
    "street_traffic": SceneRecipe(
        (-2, 0, 0, -1, -2, -3, -6, -10, -15, -23, -33),
        -22,
        (0.2, 0.3),
        (0.1, 0.4),
        {"vehicle": (7.0, 4), "footsteps": (0.8, -6), "bird": (0.2, -6)},
        (),
        (0, 4, -8),
        None,
        (0.2, -4),
    ),
    "tram": SceneRecipe(
        (-4, -1, 1, 1, -1, -4, -7, -11, -16, -25, -35),
        -24,
        (0.15, 0.3),
        (0.15, 0.4),
        {"rail": (2.5, -2), "chime": (0.6, -1), "door": (0.6, -2), "announcement": (0.4, -3)},
        (Drone((35, 60), 8, 5, -4, 0.2), Drone((300, 900), 3, 6, -9, 0.4)),
        (1, 6, -5),
    ),
}


@lru_cache(maxsize=16)
def room_response(scene: str, city: str, location: str, seed: int, n: int) -> np.ndarray:
    """rfft (n points) of a location's room impulse response: direct sound plus an exponential tail.

    Cached, since a worker renders the segments of one location one after another.
    """
    rl = rng_for(seed, "room", scene, city, location)
    rt60 = rl.uniform(*RECIPES[scene].rt60)
    length = int(min(rt60, 2.0) * SR)
    t = np.arange(length) / SR
    tail = rl.standard_normal(length) * np.exp(-6.91 * t / rt60)
    tail[: int(0.005 * SR)] = 0.0  # pre-delay before the diffuse tail
    ir = tail / np.sqrt(np.sum(tail**2)) * db(rl.uniform(-6, 2))
    ir[0] += 1.0  # direct sound
    spec = sfft.rfft(ir.astype(np.float32), n)
    spec.flags.writeable = False
    return spec


def render_scene(scene: str, city: str, location: str, segment: str, seed: int, n: int) -> np.ndarray:
    """The underlying sound of one segment (what device A would hear), float32 (n,)."""
    r = RECIPES[scene]
    rc = rng_for(seed, "city", city)
    rcs = rng_for(seed, "city-scene", city, scene)
    rl = rng_for(seed, "location", scene, city, location)
    rs = rng_for(seed, "segment", scene, city, location, segment)

    octaves = np.log2(ANCHORS / 1000.0)
    colour = np.array(r.background_db) + rc.normal(0, CITY_TILT_DB_PER_OCT) * octaves
    colour += rl.normal(0, LOCATION_COLOUR_DB, len(ANCHORS))
    level = r.level_dbfs + rc.normal(0, 1.5) + rl.normal(0, 3.0)

    rate_hz, depth = r.modulation
    mix = shaped_noise(rs, n, colour) * (1 - depth * control(rs, n, rate_hz))

    for d in r.drones:
        f0 = rl.uniform(*d.f0)
        accel = 1 + d.sweep * (control(rs, n, 0.15) - 0.5)
        tone = harmonic_tone(f0 * accel, d.harmonics, d.rolloff_db, rs)
        mix += tone / (np.sqrt(np.mean(tone**2)) + 1e-12) * db(d.level_db + rl.normal(0, 2))

    if r.babble is not None:
        lo, hi, lvl = r.babble
        talkers = int(rl.integers(lo, hi + 1))
        if talkers:
            streams = speech_like(rs, n, rs.uniform(3.5, 5.5), voices=min(talkers, 3))
            streams /= np.sqrt(np.mean(streams**2)) + 1e-12
            mix += streams * db(lvl + 10 * np.log10(talkers / 6) + rl.normal(0, 2))

    if r.music is not None and rl.random() < r.music[0]:
        m = music_phrase(rs, n)
        mix += m / (np.sqrt(np.mean(m**2)) + 1e-12) * db(r.music[1] + rl.normal(0, 3))

    if r.wind is not None and rl.random() < r.wind[0]:
        gust = control(rs, n, 0.3) ** 2
        mix += bandpass_noise(rs, n, 20, 300) * gust * db(r.wind[1] + 6 + rl.normal(0, 3))

    for name, (per_10s, lvl) in r.events.items():
        rate = per_10s * np.exp(rcs.normal(0, 0.25) + rl.normal(0, LOCATION_RATE_SPREAD))
        loc_level = lvl + rl.normal(0, 2)
        for _ in range(rs.poisson(rate * n / (10 * SR))):
            onset, ev = EVENTS[name](rs, n)
            add_at(mix, ev * db(loc_level + rs.normal(0, 3)), onset)

    if r.rt60[1] > 0:
        # Circular convolution over the clip: the tail that wraps to the start stands for the
        # reverberation of sound before the excerpt, as in a continuous ambience.
        mix = sfft.irfft(sfft.rfft(mix) * room_response(scene, city, location, seed, n), n)

    return soft_limit(mix / (np.sqrt(np.mean(mix**2)) + 1e-12) * db(level))
