"""Input pipeline against model consumption, on a corpus in the TAU layout (issue: real data at scale).

Prints clips per second for
  1. cold: decoding + log-mel of every file a training run caches, into the feature cache (parallel workers);
  2. warm: reading the cached features in shuffled training batches (what an epoch from cache costs);
  3. training steps (forward + backward + Adam) of the baseline (40x500) and BC-ResNet-ASC c40 (256x431),
     on random inputs of the right shape, so that the model's own rate is measured apart from the data;
  and, when CUDA is present, the GPU frontend and training steps with pinned memory and mixed precision.
The bottleneck is the smaller of the feeding rate (2) and the consumption rate (3).

Usage: python benchmarks/pipeline.py ROOT [--workers 2] [--steps 20] [--cache-dir DIR]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from tinyasc.config import DataConfig, FrontendConfig
from tinyasc.data.cache import cached_features
from tinyasc.data.dataset import batches, cached_clips
from tinyasc.data.index import load_tau
from tinyasc.models import create_model

MODELS = (("dcase2021_baseline", (1, 40, 500), 16), ("bcresnet_asc_c40", (1, 256, 431), 32))


def train_rate(
    name: str, shape: tuple, batch: int, steps: int, device: torch.device, amp: bool = False
) -> float:
    model = create_model(name).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.randn(batch, *shape, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    scaler = torch.amp.GradScaler(enabled=amp)
    for i in range(steps + 2):
        if i == 2:  # two warm-up steps
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * batch / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", type=Path)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--cache-dir", type=Path)
    a = ap.parse_args()
    index = load_tau(a.root, check_audio=False)
    # the list a training run caches (training fold, then evaluate), so `tinyasc train` with the same
    # data.cache_dir reads what this benchmark computed
    clips = cached_clips(index, DataConfig(root=str(a.root)))
    paths = [index.path(c) for c in clips]
    cfg = FrontendConfig()
    cache_dir = a.cache_dir or Path(tempfile.mkdtemp(prefix="tinyasc-bench-"))
    print(f"{a.root}: {len(clips)} clips (training fold + evaluate); torch threads {torch.get_num_threads()}")

    t0 = time.perf_counter()
    feats = cached_features(cfg, paths, cache_dir, workers=a.workers)
    cold = len(paths) / (time.perf_counter() - t0)
    print(f"cold  decode + log-mel into the cache ({a.workers} workers): {cold:8.1f} clips/s")

    rows = np.arange(len(paths))
    t0 = time.perf_counter()
    n = 0
    for x, _, _ in batches(
        feats,
        rows,
        np.zeros(len(rows), dtype=np.int64),
        16,
        shuffle=True,
        generator=torch.Generator().manual_seed(0),
    ):
        n += len(x)
    warm = n / (time.perf_counter() - t0)
    print(f"warm  shuffled batches of 16 from the cache:            {warm:8.1f} clips/s")

    cpu = torch.device("cpu")
    rates = {}
    for name, shape, batch in MODELS:
        rates[name] = train_rate(name, shape, batch, a.steps, cpu)
        print(f"train {name:20s} batch {batch:3d} on the CPU:        {rates[name]:8.1f} clips/s")
    slowest_feed = warm
    for name, r in rates.items():
        limit = "the model" if r < slowest_feed else "the input pipeline"
        print(f"-> {name}: an epoch from cache is bound by {limit} ({min(r, slowest_feed):.1f} clips/s)")

    if torch.cuda.is_available():
        gpu = torch.device("cuda")
        from tinyasc.frontend import LogMel

        frontend = LogMel(cfg).to(gpu)
        audio = torch.randn(64, cfg.clip_samples).pin_memory()
        for _ in range(2):
            frontend(audio.to(gpu, non_blocking=True))
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(10):
            frontend(audio.to(gpu, non_blocking=True))
        torch.cuda.synchronize()
        print(
            f"gpu   log-mel from pinned memory:                        {640 / (time.perf_counter() - t0):8.1f} clips/s"
        )
        for name, shape, batch in MODELS:
            r = train_rate(name, shape, batch * 8, a.steps, gpu, amp=True)
            print(f"gpu   train {name:20s} batch {batch * 8:3d}, bf16 autocast: {r:8.1f} clips/s")
    else:
        print("no CUDA device here: GPU figures not measured")


if __name__ == "__main__":
    main()
