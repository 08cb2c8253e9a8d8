"""The process-level settings that decide how fast PyTorch runs on a CPU: the allocator and threads.

**Allocator.** glibc returns the memory of every large tensor to the system when it is freed and the
next training step faults it back in, page by page: up to half of a BC-ResNet step was spent in the
kernel (2.4 M page faults in 5 steps). ``tune_allocator`` keeps freed memory in the process instead
(``mallopt``: no ``mmap`` for large blocks, no trimming of the heap top), which a command does before
its first tensor. The cost: the process keeps its peak heap until it exits (a training run's resident
memory stays at its largest step's instead of dropping between steps). ``TINYASC_ALLOCATOR=system``
turns it off.

**Threads.** OpenMP threads that spin while they wait burn the cores other processes need (decoding
workers, a second job on a busy machine): ``OMP_WAIT_POLICY=PASSIVE`` unless the environment sets
it, before torch loads. numpy's OpenBLAS starts a thread per core and, after every matrix product,
lets them spin for a while: one product in a loop (librosa's mel projection, beside tinyasc's one-thread
log-mel) made the process burn twice its wall time, the second core spinning (measured by the threads'
CPU ticks in /proc). tinyasc's arithmetic is torch's, so ``OPENBLAS_NUM_THREADS=1`` unless the
environment sets it, before numpy loads. ``compute_threads`` gives the model the cores the worker
processes leave, so that threads times processes never exceed the cores.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys

log = logging.getLogger(__name__)

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
# Never trim the heap top: mallopt(3) documents -1 as "disables trimming completely" (glibc stores it
# as the largest size_t). The largest positive value an int can pass, 2 GiB - 1, was trimmed past: a
# step whose freed heap top exceeded 2 GiB (BC-ResNet c40 at batch 64, and its recipe's batch of 100)
# was returned and faulted back every step: 1.51x slower per core at batch 100, 1.38x at batch 64
# (benchmarks/train_speed.py, variant ``capped``); the whole command 1.06x, its kernel time halved.
_KEEP = -1
_GLIBC_DEFAULTS = {_M_MMAP_MAX: 65536, _M_TRIM_THRESHOLD: 128 * 1024}


def _mallopt(param: int, value: int) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(param, value))
    except (OSError, AttributeError):  # not glibc (musl has no mallopt): nothing to tune
        return False


def tune_allocator(enable: bool | None = None) -> bool:
    """Keep freed memory in the process (see the module docstring); returns whether it is on.

    ``enable=None`` follows ``TINYASC_ALLOCATOR`` (``system`` = glibc's defaults); ``False`` restores
    glibc's defaults (benchmarks switch it to compare)."""
    if enable is None:
        enable = os.environ.get("TINYASC_ALLOCATOR", "tuned") != "system"
    if not enable:
        for param, value in _GLIBC_DEFAULTS.items():
            _mallopt(param, value)
        return False
    return _mallopt(_M_MMAP_MAX, 0) and _mallopt(_M_TRIM_THRESHOLD, _KEEP)


def passive_waits() -> None:
    """OpenMP threads sleep instead of spinning while they wait, and numpy's BLAS keeps to one thread;
    before torch and numpy load, unless the environment sets them."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def prepare_process() -> dict:
    """What every command does first: the allocator, the OpenMP wait policy and numpy's BLAS threads.
    Returns the settings."""
    passive_waits()
    allocator = "tuned" if tune_allocator() else "system"
    return {
        "allocator": allocator,
        "omp_wait_policy": os.environ["OMP_WAIT_POLICY"],
        "openblas_threads": os.environ["OPENBLAS_NUM_THREADS"],
    }


def cores() -> int:
    """The cores this process may run on (its CPU affinity, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def compute_threads(workers: int = 0, requested: int | None = None) -> int:
    """Threads for the model in this process when ``workers`` other processes run beside it: the cores
    they leave (at least one), at most the environment's ``OMP_NUM_THREADS`` where it names a number
    (how a user running several processes side by side shares the cores out), or ``requested``."""
    if requested:
        return requested
    threads = max(1, cores() - max(workers, 0))
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    return min(threads, int(env)) if env.isdigit() and int(env) > 0 else threads


def loader_workers(requested: int | None, device_type: str, processes: int = 1) -> int:
    """Batch-reading worker processes of one training process (``train.loader_workers``): as requested,
    else none on the CPU (a reader would take a core from the model) and, on CUDA, up to 4 per process
    from the cores the ``processes`` training processes of this machine share (one core each kept)."""
    if requested is not None:
        return requested
    if device_type != "cuda":
        return 0
    return max(1, min(4, cores() // max(processes, 1) - 1))


def native_bfloat16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX), where autocast pays off."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "")
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def autocast_dtype(precision: str, device_type: str, family_gains: bool = True):
    """The autocast dtype of ``train.precision`` on ``device_type`` (None: plain float32).

    ``auto``: bfloat16 on CUDA, and on a CPU that computes it natively for a model whose family
    declares that it trains faster so (``family_gains``, measured per family); float32 otherwise."""
    import torch

    if precision == "auto":
        native = device_type == "cuda" or (native_bfloat16() and family_gains)
        precision = "bfloat16" if native else "float32"
    if precision == "float32":
        return None
    if precision == "float16" and device_type != "cuda":
        raise ValueError("train.precision=float16 needs a CUDA device (CPUs train in float32 or bfloat16)")
    return torch.bfloat16 if precision == "bfloat16" else torch.float16
