"""Training-step speed per model: the allocator switch, bfloat16 autocast and channels_last, as ratios.

    python benchmarks/train_speed.py [--models dcase2021_baseline bcresnet_asc_c40 ...] [--steps 6]

One thread (``torch.set_num_threads(1)``), random normalised log-mel batches of the model's input,
cross-entropy, Adam: the work of one training step without data loading. Each variant is timed in the
same process, interleaved over ``--rounds`` rounds, each round starting one variant later (A B C, B C A,
C A B, ...: the first variant of a round measured up to 5% slower than the same variant later in it,
so no variant always goes first); the figure is the median process CPU time per step (wall time
beside it). GFLOP/s counts 3 x 2 x MACs per clip (forward and the two backward products) over the
CPU time, against a roof this script measures itself: a large 3x3 float32
convolution (oneDNN, channels_last, the best of two shapes) on the same thread, in float32 and in
bfloat16; a bfloat16 variant's share is of the bfloat16 roof. Variants:

- ``system``: glibc's default allocator (what tinyasc did before ``engine.tune_allocator``);
- ``tuned``: freed memory kept in the process (tinyasc's default now);
- ``capped``: as ``tuned`` but the heap top trimmed past 2 GiB, the largest positive threshold
  ``mallopt`` takes, which ``engine.tune_allocator`` set before it disabled trimming (steps that free
  more than that, BC-ResNet c40 at ``--batch 64`` and more, faulted it back every step);
- ``tuned+bf16``: and ``torch.autocast('cpu', bfloat16)``;
- ``tuned+cl``: and channels_last memory format;
- ``+atenpool`` on any of them (``--variants system+atenpool tuned``): the models' 2x2 max pooling
  through ATen's own ``nn.MaxPool2d`` instead of ``models.layers.MaxPool2d`` (whose NCHW CPU path is
  two pairwise maxima);
- ``+before`` on any of them: every model-code change of the engine work undone: ATen's pooling (as
  ``+atenpool``), plain ``nn.Conv2d`` for the ``models.layers.Conv1x1`` convolutions (BC-ResNet's
  1x1 ones, whose NCHW CPU path is matrix products), BC-ResNet's ResNorm as it was written before
  (autograd through a layer norm of the transposed map, then ``lambda * x + ifn``), its blocks'
  mean over frequency through ATen's ``mean``, its head, first ResNorm and first 1x1 convolution
  layer by layer instead of ``bcresnet.fused_stem`` and plain ``nn.Conv2d`` for its 3x1 depthwise
  ``bcresnet.FrequencyConv``: ``system+before`` is the training step before the engine work began;
  one of those alone: ``+plainconv``, ``+oldresnorm``, ``+oldmean``, ``+unfusedstem``, ``+plaindw``
  (``--variants tuned+family tuned+family+oldresnorm``);
- ``+inplace`` on any of them: every activation module (ReLU, ReLU6, SiLU, Hardswish) in place;
- ``+family`` on any of them: the memory format and precision ``tinyasc train`` chooses for the
  model (its family's ``channels_last``; bfloat16 where ``train.precision=auto`` takes it): ``tuned+family``
  is the training step of today's defaults; ``+layout``: the family's memory format only (float32);
- ``+bf16dw`` with bfloat16: the depthwise convolutions left in bfloat16 (before
  ``train.loop.DepthwiseInFloat32`` ran the slow ones in float32);
- ``+qat`` on any of them: the model replaced by its fake-quantised copy, as ``quantize: int8-qat``
  trains it (``compress/int8.py``; with ``+family``: float32 and NCHW, as ``fit()`` chooses for it);
- ``+compile`` on any of them (``--variants tuned tuned+compile tuned+bf16+compile``): the model
  through ``torch.compile``, as ``train.compile`` does (its compilation is in the untimed warm-up step,
  and printed separately).

State the machine's load (printed) beside the figures.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import types

import torch
import torch.nn.functional as F
from torch import nn

from timing import cpu_name
from tinyasc import engine
from tinyasc.compress.macs import count_macs
from tinyasc.config import load_config
from tinyasc.models import create_model, get_model_info
from tinyasc.models.bcresnet import BCResBlock, FrequencyConv, ResNorm
from tinyasc.models.layers import Conv1x1, MaxPool2d
from tinyasc.train.hooks import QuantizationAware
from tinyasc.train.loop import autocast
from tinyasc.train.run import memory_format, mixed_precision

VARIANTS = ("system", "tuned", "tuned+bf16", "tuned+cl")
AUTO = load_config(None, ["train.precision=auto"])


def roof_gflops(seconds: float = 1.5, dtype: torch.dtype = torch.float32) -> float:
    """GFLOP/s of the fastest of a few large 3x3 convolutions (channels_last, oneDNN) in ``dtype``."""
    best = 0.0
    for channels, size, batch in ((128, 64, 8), (256, 32, 16)):
        x = torch.randn(batch, channels, size, size).to(dtype).contiguous(memory_format=torch.channels_last)
        w = torch.randn(channels, channels, 3, 3).to(dtype).contiguous(memory_format=torch.channels_last)
        flops = 2 * channels * channels * 9 * size * size * batch
        F.conv2d(x, w, padding=1)
        n, t0 = 0, time.process_time()
        while time.process_time() - t0 < seconds:
            F.conv2d(x, w, padding=1)
            n += 1
        best = max(best, n * flops / (time.process_time() - t0) / 1e9)
    return best


def aten_pools(model: torch.nn.Module) -> int:
    """Swap every ``models.layers.MaxPool2d`` of ``model`` for ATen's ``nn.MaxPool2d`` (same settings)."""
    swapped = 0
    for parent in list(model.modules()):
        for child_name, child in parent.named_children():
            if isinstance(child, MaxPool2d):
                plain = torch.nn.MaxPool2d(
                    child.kernel_size,
                    child.stride,
                    child.padding,
                    child.dilation,
                    child.return_indices,
                    child.ceil_mode,
                )
                setattr(parent, child_name, plain)
                swapped += 1
    return swapped


def resnorm_before(norm: ResNorm, x: torch.Tensor) -> torch.Tensor:
    """ResNorm's forward before the engine work, left to autograd."""
    ifn = F.layer_norm(x.transpose(1, 2), (x.shape[1], x.shape[3]), eps=norm.eps).transpose(1, 2)
    return norm.lam * x + ifn


def block_before(block: BCResBlock, x: torch.Tensor) -> torch.Tensor:
    """BC-ResNet's block after its transition (``after_pre``) before the engine work (ATen's mean over
    frequency)."""
    aux = block.f2(x)
    out = block.f1(aux.mean(dim=2, keepdim=True)) + aux
    if not block.transition:
        out = out + x
    return torch.relu(out)


# with ATen's pooling, what +before undoes
BEFORE = {"plainconv", "oldresnorm", "oldmean", "unfusedstem", "plaindw"}


def model_code_before(model: torch.nn.Module, undo: set[str]) -> None:
    """Undo, in place, the model-code changes named in ``undo``: ``plainconv`` (plain 1x1
    convolutions), ``oldresnorm`` (the old ResNorm forward), ``oldmean`` (the old block forward),
    ``unfusedstem`` (BC-ResNet's head, first ResNorm and first 1x1 convolution layer by layer),
    ``plaindw`` (plain ``nn.Conv2d`` for BC-ResNet's frequency-wise depthwise convolutions)."""
    if "unfusedstem" in undo and hasattr(model, "fuse_stem"):
        model.fuse_stem = False
    for parent in list(model.modules()):
        for child_name, child in parent.named_children():
            if "plaindw" in undo and isinstance(child, FrequencyConv):
                setattr(parent, child_name, child.for_quantization())
            elif "plainconv" in undo and isinstance(child, Conv1x1):
                setattr(parent, child_name, child.for_quantization())
            elif "oldresnorm" in undo and isinstance(child, ResNorm):
                child.forward = types.MethodType(resnorm_before, child)
            elif "oldmean" in undo and isinstance(child, BCResBlock):
                child.after_pre = types.MethodType(block_before, child)


def make_step(name: str, batch: int, variant: str):
    torch.manual_seed(0)
    model = create_model(name).train()
    info = get_model_info(name)
    x = torch.randn(batch, 1, info.n_mels, info.frames)
    y = torch.randint(0, 10, (batch,))
    switches = set(variant.split("+")[1:])
    hooks = [QuantizationAware()] if "qat" in switches else []
    # the family's memory format and the precision train.precision=auto gives it, as fit() asks for them
    if switches & {"family", "layout"} and memory_format(model, hooks) == torch.channels_last:
        switches.add("cl")
    if (
        "family" in switches
        and mixed_precision(AUTO, torch.device("cpu"), model, hooks, False)[0] is not None
    ):
        switches.add("bf16")
    if "before" in switches:
        switches |= BEFORE | {"atenpool"}
    if "atenpool" in switches:
        aten_pools(model)
    model_code_before(model, switches & BEFORE)
    if "qat" in switches:  # the fake-quantised copy that quantize=int8-qat trains
        model = hooks[0].wrap_model(model)
    if "inplace" in switches:  # every activation module that can overwrite its input does
        for m in model.modules():
            if hasattr(m, "inplace") and isinstance(
                m, (nn.ReLU, nn.ReLU6, nn.Hardtanh, nn.SiLU, nn.Hardswish)
            ):
                m.inplace = True
    if "cl" in switches:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    bf16 = "bf16" in switches
    forward = torch.compile(model) if "compile" in switches else model

    def step():
        with autocast("cpu", torch.bfloat16 if bf16 else None, depthwise_float32="bf16dw" not in switches):
            loss = F.cross_entropy(forward(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step, bf16


def measure(step, steps: int) -> tuple[float, float, float]:
    """(median CPU s, median wall s, wall s of the warm-up step): the warm-up step pays first-call
    allocations, oneDNN primitive creation and, with +compile, the compilation."""
    w0 = time.perf_counter()
    step()
    warm = time.perf_counter() - w0
    cpu, wall = [], []
    for _ in range(steps):
        c, w = time.process_time(), time.perf_counter()
        step()
        cpu.append(time.process_time() - c)
        wall.append(time.perf_counter() - w)
    return statistics.median(cpu), statistics.median(wall), warm


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--models", nargs="+", default=["dcase2021_baseline", "bcresnet_asc_c40", "cpresnet_c20"])
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--variants", nargs="+", default=list(VARIANTS))
    a = p.parse_args()
    torch.set_num_threads(1)
    print(
        f"load average {os.getloadavg()}; torch {torch.__version__}; 1 thread; batch {a.batch}; {cpu_name()}"
    )
    roofs = {False: roof_gflops(), True: roof_gflops(dtype=torch.bfloat16)}
    print(
        f"roof: {roofs[False]:.1f} GFLOP/s float32, {roofs[True]:.1f} GFLOP/s bfloat16 (3x3 conv, one "
        "thread); a variant's % of roof is against the roof of its own arithmetic\n"
    )
    print(
        "| model | variant | CPU ms/step | wall ms/step | clips/s per core | GFLOP/s | % of roof "
        f"| vs {a.variants[0]} | first step s |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name in a.models:
        macs = count_macs(create_model(name).eval()).total
        flops = 3 * 2 * macs * a.batch
        times: dict[str, list[tuple[float, float, float]]] = {v: [] for v in a.variants}
        bf16: dict[str, bool] = {}
        for r in range(a.rounds):
            shift = r % len(a.variants)
            for v in a.variants[shift:] + a.variants[:shift]:  # interleaved and rotated: A B C, B C A
                allocator = v.split("+")[0]
                engine.tune_allocator(allocator != "system")
                if allocator == "capped":
                    engine._mallopt(engine._M_TRIM_THRESHOLD, 2**31 - 1)
                step, bf16[v] = make_step(name, a.batch, v)
                times[v].append(measure(step, a.steps))
        engine.tune_allocator(True)
        base = statistics.median(c for c, _, _ in times[a.variants[0]])
        for v in a.variants:
            cpu = statistics.median(c for c, _, _ in times[v])
            wall = statistics.median(w for _, w, _ in times[v])
            first = max(f for _, _, f in times[v])
            gf = flops / cpu / 1e9
            roof = roofs[bf16[v]]
            label = f"{v} ({'bf16' if bf16[v] else 'fp32'})" if "+family" in v else v
            print(
                f"| {name} | {label} | {1000 * cpu:.1f} | {1000 * wall:.1f} | {a.batch / cpu:.1f} | {gf:.1f} | "
                f"{100 * gf / roof:.1f}% | {base / cpu:.2f}x | {first:.1f} |"
            )


if __name__ == "__main__":
    main()
