"""torch.distributed for training, launched by torchrun (DistributedDataParallel).

One process per device. Each rank sees its share of every global batch: the epoch's order comes from
``DistributedSampler`` (seeded, shuffled, ``set_epoch``), so the union of the ranks' k-th batches is
exactly the k-th batch of a single process with the same global batch size (when the training set
divides by the number of ranks; otherwise the sampler pads with a few repeated clips). DDP averages
gradients; metrics are summed across ranks with ``all_reduce``; only rank 0 writes files.

Batch norm: on CUDA, ``train.sync_batchnorm`` converts it to SyncBatchNorm so statistics cover the
global batch. PyTorch has no SyncBatchNorm on the CPU, so CPU (gloo) ranks normalise over their own
share of the batch; that is the one difference from a single process (see tests/test_distributed.py).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DistributedSampler


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def sum(self, *values: float) -> list[float]:
        """Sum scalars over all ranks (identity for one process)."""
        if not self.active:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t.tolist()


def init_distributed() -> Dist:
    """Join the process group torchrun describes (WORLD_SIZE > 1); one process otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend=backend)
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local)
    return Dist(dist.get_rank(), dist.get_world_size(), local)


def shutdown(d: Dist) -> None:
    if d.active and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def epoch_order(n: int, epoch: int, seed: int, d: Dist) -> np.ndarray:
    """This rank's positions for an epoch (a shuffled permutation shared by all ranks, interleaved)."""
    sampler = DistributedSampler(range(n), num_replicas=d.world, rank=d.rank, shuffle=True, seed=seed)
    sampler.set_epoch(epoch)
    return np.fromiter(iter(sampler), dtype=np.int64)
