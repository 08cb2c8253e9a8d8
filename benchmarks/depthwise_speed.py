"""Depthwise convolutions in bfloat16 on the CPU: forward and backward of one training batch.

    python benchmarks/depthwise_speed.py [--batch 16] [--rounds 3]

For depthwise convolutions of the zoo's shapes (MobileNetV2 / EfficientNet / CP-Mobile: 3x3 and 5x5,
stride 1 and 2, channels_last; BC-ResNet: (3,1) and (1,3), NCHW), times the forward and the backward of
one batch three ways, interleaved (A B C A B C): in float32; in bfloat16 (what autocast runs); and in
float32 between a cast of the bfloat16 input up and of the output back down (what
``train.loop.DepthwiseInFloat32`` runs under bfloat16 autocast for the strided and the larger-than-3x3
ones). Median process CPU time per forward+backward on one thread, with the load and the CPU.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
import torch.nn.functional as F

from timing import cpu_name
from tinyasc import engine

CL, NCHW = torch.channels_last, torch.contiguous_format
# (label, channels, height, width, kernel, stride, memory format)
SHAPES = (
    ("MobileNetV2 3x3 s2", 64, 64, 216, (3, 3), 2, CL),
    ("EfficientNet 3x3 s2", 96, 32, 108, (3, 3), 2, CL),
    ("EfficientNet 5x5 s1", 96, 32, 108, (5, 5), 1, CL),
    ("EfficientNet 5x5 s2", 96, 32, 108, (5, 5), 2, CL),
    ("MobileNetV2 3x3 s1", 96, 32, 108, (3, 3), 1, CL),
    ("3x3 s1, small map", 128, 16, 54, (3, 3), 1, CL),
    ("BC-ResNet c40 (3,1)", 40, 128, 216, (3, 1), 1, NCHW),
    ("BC-ResNet c40 (1,3)", 40, 128, 216, (1, 3), 1, NCHW),
)
WAYS = ("float32", "bfloat16", "float32 between casts")


def make(way: str, batch: int, c: int, h: int, w: int, kernel, stride: int, fmt):
    dtype = torch.float32 if way == "float32" else torch.bfloat16
    x = torch.randn(batch, c, h, w).to(dtype).contiguous(memory_format=fmt).requires_grad_()
    weight_dtype = torch.bfloat16 if way == "bfloat16" else torch.float32
    weight = torch.randn(c, 1, *kernel).to(weight_dtype).contiguous(memory_format=fmt).requires_grad_()
    pad = (kernel[0] // 2, kernel[1] // 2)
    cast = way == "float32 between casts"

    def forward():
        y = F.conv2d(x.float() if cast else x, weight, stride=stride, padding=pad, groups=c)
        return y.to(torch.bfloat16) if cast else y

    with torch.no_grad():
        grad = torch.randn(forward().shape).to(dtype).contiguous(memory_format=fmt)
    return lambda: forward().backward(grad)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--rounds", type=int, default=3)
    a = p.parse_args()
    engine.tune_allocator(True)
    torch.set_num_threads(1)
    print(f"load average {os.getloadavg()[0]:.2f}; 1 thread; batch {a.batch}; {cpu_name()}\n")
    print("| convolution | map (C x H x W) | " + " | ".join(f"{w} ms" for w in WAYS) + " |")
    print("|---|---|" + "---|" * len(WAYS))
    for label, c, h, w, kernel, stride, fmt in SHAPES:
        runs = {way: make(way, a.batch, c, h, w, kernel, stride, fmt) for way in WAYS}
        times: dict[str, list[float]] = {way: [] for way in WAYS}
        for _ in range(a.rounds):
            for way, run in runs.items():  # interleaved
                run()  # warm-up: oneDNN primitive creation
                t0 = time.process_time()
                run()
                times[way].append(time.process_time() - t0)
        cells = " | ".join(f"{1000 * statistics.median(times[way]):.1f}" for way in WAYS)
        print(f"| {label} | {c} x {h} x {w} | {cells} |")


if __name__ == "__main__":
    main()
