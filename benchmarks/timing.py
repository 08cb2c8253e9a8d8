"""Shared by the benchmark scripts (run as ``python benchmarks/NAME.py``, so this folder is on the path)."""

from __future__ import annotations

import time


def timed(fn, *args) -> tuple[float, float]:
    """``(wall seconds, process CPU seconds)`` of one call ``fn(*args)``."""
    w, c = time.perf_counter(), time.process_time()
    fn(*args)
    return time.perf_counter() - w, time.process_time() - c
