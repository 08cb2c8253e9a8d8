"""Prediction speed on 10 s clips: files per second and the share of decoding, resampling, frontend, model.

Writes N synthetic 10 s clips (24-bit WAV at --rate Hz, so 48 kHz exercises the resampler), then runs
``tinyasc predict``'s path (parallel decoding workers, batched model) with the DCASE 2021 baseline.
Worker stages are summed CPU-side per file; the model time is the main process's batched forward pass.

Usage: python benchmarks/predict_speed.py [--files 64] [--rate 48000] [--workers 2] [--model RUN_DIR]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from tinyasc.compress.quantize import quantize_float16
from tinyasc.config import FrontendConfig
from tinyasc.evaluate.infer import predict_files
from tinyasc.evaluate.predict import LoadedModel, load_model
from tinyasc.frontend import Normalizer
from tinyasc.models import create_model


def fresh_baseline() -> LoadedModel:
    """An untrained baseline stored in float16, as shipped (the speed does not depend on the weights)."""
    model = create_model("dcase2021_baseline").eval()
    model.load_state_dict({k: v.float() for k, v in quantize_float16(model).items()})
    frontend = FrontendConfig()
    return LoadedModel(
        model,
        Normalizer(frontend.n_mels),
        frontend,
        tuple(str(i) for i in range(10)),
        "float16",
        Path("untrained"),
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=64)
    ap.add_argument("--rate", type=int, default=48000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--model", help="a run directory (default: an untrained float16 baseline)")
    a = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    lm = load_model(a.model) if a.model else fresh_baseline()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for i in range(a.files):
            p = Path(tmp) / f"{i}.wav"
            sf.write(p, (0.1 * rng.standard_normal(10 * a.rate)).astype(np.float32), a.rate, subtype="PCM_24")
            paths.append(p)
        t0 = time.perf_counter()
        results = predict_files(lm, paths, workers=a.workers)
        wall = time.perf_counter() - t0
    stages = {
        k: sum(r.timing.get(k, 0.0) for r in results) for k in ("decode", "resample", "frontend", "model")
    }
    total = sum(stages.values())
    print(f"{a.files} files of 10 s at {a.rate} Hz, {a.workers} decoding worker(s), model {lm.path.name}")
    print(f"files per second: {a.files / wall:.1f} (wall {wall:.1f} s, including worker start-up)")
    print("share of time: " + ", ".join(f"{k} {100 * v / total:.0f}%" for k, v in stages.items()))


if __name__ == "__main__":
    main()
