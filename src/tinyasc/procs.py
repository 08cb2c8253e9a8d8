"""Worker processes that never outlive their parent.

Every process pool of tinyasc (feature cache, synthetic corpus, prediction) starts its workers through
``worker_pool``. Each worker asks the Linux kernel for SIGKILL when its parent dies
(``prctl(PR_SET_PDEATHSIG)``), so a parent killed with SIGKILL, or ended by SIGTERM, takes its workers
with it instead of leaving them running (or writing files) with no one to read their results. A worker
whose parent is already gone when it starts exits at once. On systems without ``prctl`` the pool is an
ordinary one and the interpreter's own shutdown is what ends the workers.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor

_PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int) -> None:
    """In a child process: be killed when ``parent_pid`` exits (Linux); exit now if it already has."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent_pid:  # the parent died before the request above took effect
        os._exit(1)


def _start_worker(parent_pid: int, initializer: Callable | None, initargs: tuple) -> None:
    die_with_parent(parent_pid)
    if initializer is not None:
        initializer(*initargs)


def worker_pool(
    workers: int, initializer: Callable | None = None, initargs: tuple = ()
) -> ProcessPoolExecutor:
    """A process pool whose workers die with this process (see the module docstring)."""
    return ProcessPoolExecutor(
        max_workers=workers, initializer=_start_worker, initargs=(os.getpid(), initializer, initargs)
    )
