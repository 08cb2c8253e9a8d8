"""Memory and time of predicting one long recording (parts of ``PART_WINDOWS`` windows).

    python benchmarks/long_file.py RUN --minutes 60 [--rate 48000 --channels 2 --workers 2]

Writes a noise recording of the given length (once, into --dir), predicts it with the run's shipped
model and prints the wall time, process CPU time and peak resident memory of the main process and of
the largest worker. State the machine's load (``uptime``) beside the figures.
"""

from __future__ import annotations

import argparse
import os
import resource
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from tinyasc.evaluate.infer import PART_WINDOWS, predict_files
from tinyasc.evaluate.predict import load_model


def write_noise(path: Path, minutes: int, rate: int, channels: int) -> None:
    rng = np.random.default_rng(0)
    with sf.SoundFile(str(path), "w", rate, channels, subtype="PCM_16") as f:
        for _ in range(minutes):  # a minute at a time: the writer itself stays small
            f.write((rng.standard_normal((rate * 60, channels)) * 0.05).astype(np.float32))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("run")
    p.add_argument("--minutes", type=int, default=60)
    p.add_argument("--rate", type=int, default=48000)
    p.add_argument("--channels", type=int, default=2)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--dir", default="/tmp")
    a = p.parse_args()
    path = Path(a.dir) / f"long_{a.minutes}min_{a.rate}_{a.channels}ch.wav"
    if not path.exists():
        write_noise(path, a.minutes, a.rate, a.channels)
    lm = load_model(a.run)
    print(f"load: {os.getloadavg()}; {path.name}: {path.stat().st_size / 2**20:.0f} MB")
    t, c = time.perf_counter(), time.process_time()
    (res,) = predict_files(lm, [path], workers=a.workers)
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    main_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    worker_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"{len(res.windows)} windows (parts of {PART_WINDOWS}), error: {res.error}")
    print(f"wall {wall:.1f} s, main-process CPU {cpu:.1f} s")
    print(f"peak resident memory: main {main_mb:.0f} MB, largest worker {worker_mb:.0f} MB")


if __name__ == "__main__":
    main()
