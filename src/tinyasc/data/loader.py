"""Training batches read by worker processes (``train.loader_workers``): a GPU path that does not wait.

In the training process, :func:`tinyasc.data.dataset.batches` reads each batch from the feature (or
waveform) cache between optimiser steps. That is the right choice on a CPU, where a reader process
would take a core from the model (a batch of 16 log-mels reads in well under a millisecond). On a GPU
the step is short, so :class:`BatchLoader` moves the reading into persistent worker processes (a
``torch.utils.data.DataLoader``) that read ahead, into pinned memory when training on CUDA, so that
the copies to the device can be non-blocking.

The batches are exactly those of ``batches(source, rows[order], labels[order], batch_size)`` in the same
order: the training process still decides the epoch's order and sends each worker the rows of the
batch it is to read (a few hundred bytes); the worker only reads. The cache is a memory map that each
worker opens again by path, so starting the workers copies no feature data. Workers are seeded (base
seed from ``seed``; they draw no random numbers today, augmentation runs in the training process) and
die with their parent (``procs.die_with_parent``).
"""

from __future__ import annotations

import functools
import os

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from tinyasc.data.dataset import batches, read_batch
from tinyasc.procs import die_with_parent


class _Rows(Dataset):
    """``dataset[(pos, sel, y)]`` -> ``(x, y, pos)``: one batch read from the cache by its rows."""

    def __init__(self, source: np.ndarray):
        path = getattr(source, "filename", None) if isinstance(source, np.memmap) else None
        self._path, self._shape = path, source.shape
        self._array = None if path else source  # an in-memory array goes to the workers as it is

    def _source(self) -> np.ndarray:
        if self._array is None:  # first read in this process: map the cache file again
            self._array = np.load(self._path, mmap_mode="r")
            if self._array.shape != self._shape:
                raise RuntimeError(f"{self._path}: shape {self._array.shape}, expected {self._shape}")
        return self._array

    def __getitem__(self, key):
        pos, sel, y = key
        return read_batch(self._source(), sel), torch.from_numpy(y), pos

    def __getstate__(self):  # the workers get the path of a memory map, never its contents
        state = dict(self.__dict__)
        if self._path:
            state["_array"] = None
        return state


class _EpochKeys(Sampler):
    """The keys of the current epoch's batches, set by the training process before each epoch."""

    def __init__(self):
        self.keys: list = []

    def __iter__(self):
        return iter(self.keys)

    def __len__(self) -> int:
        return len(self.keys)


def _as_is(batch):
    return batch


def _start_worker(parent_pid: int, seed: int, worker_id: int) -> None:
    die_with_parent(parent_pid)
    np.random.seed((seed * 1000 + worker_id) % 2**32)


class BatchLoader:
    """``loader.epoch(rows, labels, batch_size)`` iterates the batches of one epoch's ordered rows;
    ``workers`` 0 reads them in this process, N in N persistent worker processes."""

    def __init__(self, source: np.ndarray, workers: int, pin_memory: bool, seed: int, prefetch: int = 4):
        self.source, self.workers = source, workers
        self._keys = _EpochKeys()
        self._loader = None
        if workers > 0:
            self._loader = DataLoader(
                _Rows(source),
                sampler=self._keys,
                batch_size=None,  # the keys are whole batches
                collate_fn=_as_is,
                num_workers=workers,
                pin_memory=pin_memory,
                persistent_workers=True,
                prefetch_factor=prefetch,
                worker_init_fn=functools.partial(_start_worker, os.getpid(), seed),
                generator=torch.Generator().manual_seed(seed),
            )

    def epoch(self, rows: np.ndarray, labels: np.ndarray, batch_size: int):
        if self._loader is None:
            return batches(self.source, rows, labels, batch_size)
        self._keys.keys = [
            (pos, rows[pos], labels[pos])
            for pos in (np.arange(i, min(i + batch_size, len(rows))) for i in range(0, len(rows), batch_size))
        ]
        return iter(self._loader)
