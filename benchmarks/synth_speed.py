"""Synthetic corpus generation speed: clips per second per core, and where the time goes.

Renders N source segments (one per scene, cycling) and passes each through D devices, in one process,
timing scene rendering, device simulation and the 24-bit WAV write separately.

Usage: python benchmarks/synth_speed.py [--segments 30] [--devices 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from tinyasc.data.synth.devices import apply_device
from tinyasc.data.synth.dsp import SR
from tinyasc.data.synth.scenes import RECIPES, render_scene

DEVICES = ("a", "b", "c", "s1", "s2", "s3", "s4", "s5", "s6")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--segments", type=int, default=30)
    ap.add_argument(
        "--devices", type=int, default=2, help="devices per segment (the mirrored split averages ~2)"
    )
    a = ap.parse_args()
    scenes = list(RECIPES)
    t_scene = t_dev = t_write = 0.0
    clips = 0
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(a.segments):
            t = time.process_time()
            src = render_scene(scenes[i % 10], "paris", str(i), str(1000 + i), 0, 10 * SR)
            t_scene += time.process_time() - t
            for d in DEVICES[: a.devices]:
                t = time.process_time()
                y = apply_device(src, d, str(i), 0)
                t_dev += time.process_time() - t
                t = time.process_time()
                sf.write(
                    Path(tmp) / f"{i}-{d}.wav", np.clip(y, -1, 1).astype(np.float32), SR, subtype="PCM_24"
                )
                t_write += time.process_time() - t
                clips += 1
    total = t_scene + t_dev + t_write
    print(f"{clips} clips of 10 s from {a.segments} segments x {a.devices} devices, one process (CPU time)")
    print(f"clips per second per core: {clips / total:.1f}")
    print(
        f"share: scene rendering {100 * t_scene / total:.0f}%, device simulation {100 * t_dev / total:.0f}%, "
        f"24-bit WAV write {100 * t_write / total:.0f}%"
    )
    print(
        f"per segment: scene {1000 * t_scene / a.segments:.0f} ms; per clip: device {1000 * t_dev / clips:.0f} ms, "
        f"write {1000 * t_write / clips:.0f} ms"
    )


if __name__ == "__main__":
    main()
