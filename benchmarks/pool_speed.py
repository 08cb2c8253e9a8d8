"""2x2 max pooling on one thread: ATen's NCHW kernel, ATen's channels_last kernel and tinyasc's pairwise
form of NCHW tensors (``models.layers.MaxPool2d``), without and with the backward.

    python benchmarks/pool_speed.py [--shape 16 40 128 216] [--reps 5] [--rounds 3]

The default shape is BC-ResNet-ASC c40's first pooling at batch 16 (40 channels, 256 mel bands
halved by the stem to 128, 431 frames to 216). The three forms are timed in one process, interleaved
(A B C A B C ...) with the allocator tinyasc's commands use (``engine.tune_allocator``); each figure
is the median process CPU time of one call (wall time beside it). A pass that only reads the map
(``x.sum()``) is printed as the memory scale. State the load (printed).
"""

from __future__ import annotations

import argparse
import os
import statistics

import torch
import torch.nn.functional as F

from timing import timed
from tinyasc import engine
from tinyasc.models.layers import MaxPool2d


def median_call(fn, reps: int) -> tuple[float, float]:
    """Median (CPU s, wall s) of ``reps`` calls after one warm-up call (first-call allocations)."""
    fn()
    runs = [timed(fn) for _ in range(reps)]
    return statistics.median(c for _, c in runs), statistics.median(w for w, _ in runs)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--shape", nargs=4, type=int, default=[16, 40, 128, 216])
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--rounds", type=int, default=3)
    a = p.parse_args()
    engine.tune_allocator(True)  # as every tinyasc command runs: freed memory stays in the process
    torch.set_num_threads(1)
    torch.manual_seed(0)
    print(f"load average {os.getloadavg()}; torch {torch.__version__}; 1 thread; shape {tuple(a.shape)}")
    x = torch.randn(*a.shape)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    pairwise = MaxPool2d(2)

    # The gradient that arrives from the next layer in training: a dense map of the output's shape.
    grad = torch.randn(*a.shape[:2], a.shape[2] // 2, a.shape[3] // 2)

    def with_backward(pool, src):
        def run():
            leaf = src.detach().requires_grad_()
            pool(leaf).backward(grad)

        return run

    def forward_only(pool, src):
        def run():
            with torch.no_grad():
                pool(src)

        return run

    aten = lambda t: F.max_pool2d(t, 2)  # noqa: E731 (ATen's own kernel whatever the layout)
    forms = {
        "ATen, NCHW": (aten, x),
        "ATen, channels_last": (aten, x_cl),
        "pairwise, NCHW": (pairwise, x),
    }
    cases = [(f"{name}, forward", forward_only(*f)) for name, f in forms.items()]
    cases += [(f"{name}, forward + backward", with_backward(*f)) for name, f in forms.items()]
    cases.append(("read the map once (x.sum())", lambda: x.sum()))
    times: dict[str, list[tuple[float, float]]] = {name: [] for name, _ in cases}
    for _ in range(a.rounds):
        for name, fn in cases:  # interleaved: A B C ... A B C ...
            times[name].append(median_call(fn, a.reps))
    print("\n| form | CPU ms | wall ms |")
    print("|---|---|---|")
    for name, runs in times.items():
        cpu = statistics.median(c for c, _ in runs) * 1e3
        wall = statistics.median(w for _, w in runs) * 1e3
        print(f"| {name} | {cpu:.1f} | {wall:.1f} |")


if __name__ == "__main__":
    main()
