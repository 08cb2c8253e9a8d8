"""Shared by the benchmark scripts (run as ``python benchmarks/NAME.py``, so this folder is on the path)."""

from __future__ import annotations

import time


def timed(fn, *args) -> tuple[float, float]:
    """``(wall seconds, process CPU seconds)`` of one call ``fn(*args)``."""
    w, c = time.perf_counter(), time.process_time()
    fn(*args)
    return time.perf_counter() - w, time.process_time() - c


def cpu_name() -> str:
    """The CPU's model name and its bfloat16 units (the figures of the speed benchmarks depend on them)."""
    try:
        with open("/proc/cpuinfo") as f:
            lines = f.read().splitlines()
    except OSError:
        return "unknown CPU"
    name = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), "unknown CPU")
    flags = next((ln for ln in lines if ln.startswith("flags")), "").split()
    units = [f for f in ("avx512_bf16", "amx_bf16") if f in flags]
    return f"{name} ({', '.join(units) or 'no native bfloat16'})"
