"""DistributedDataParallel with two CPU processes (gloo) under torchrun, against one process.

Tolerance: per-epoch train and validation losses agree within 0.03. The global batches are identical
(DistributedSampler order); what differs is batch norm, which on the CPU normalises over each rank's
half of the batch (PyTorch has no CPU SyncBatchNorm). Dropout is off so both runs are deterministic.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tinyasc.data.index import load_tau
from tinyasc.train.distributed import Dist, epoch_order


def test_rank_shards_make_the_single_process_batches():
    n, batch = 40, 16
    single = epoch_order(n, epoch=3, seed=0, d=Dist())
    ranks = [epoch_order(n, epoch=3, seed=0, d=Dist(rank=r, world=2)) for r in range(2)]
    for k in range(0, n, batch):
        union = np.concatenate([ranks[0][k // 2 : (k + batch) // 2], ranks[1][k // 2 : (k + batch) // 2]])
        assert sorted(union) == sorted(single[k : k + batch])
    assert not np.array_equal(single, epoch_order(n, epoch=4, seed=0, d=Dist()))


def _args(tiny_corpus, tmp_path, run_dir, epochs):
    ix = load_tau(tiny_corpus)
    csv = tmp_path / "labels.csv"
    rows = [f"{c.filename}\t{c.scene}\t{1 if c.split == 'train' else 2}" for c in ix.clips]
    csv.write_text("filename\tscene_label\tfold\n" + "\n".join(rows) + "\n")
    # generic format: validation is 30% of files, so the 60 training clips leave 40 to train on
    return [
        "train",
        "configs/baseline.yaml",
        "data.format=generic",
        f"data.csv={csv}",
        f"data.root={tiny_corpus}",
        "data.evaluate_folds=[2]",
        f"data.cache_dir={tmp_path / 'cache'}",
        f"train.epochs={epochs}",
        "train.select_after=0",
        "train.threads=1",
        "model.params={dropout: 0.0}",
        "--run-dir",
        str(run_dir),
        "--quiet",
    ]


def _torchrun(args):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "tinyasc.cli",
        *args,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]


def _metrics(run_dir):
    return [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_two_processes_match_one(tiny_corpus, tmp_path):
    from tinyasc.cli import main

    _torchrun(_args(tiny_corpus, tmp_path, tmp_path / "ddp", 3))
    assert main(_args(tiny_corpus, tmp_path, tmp_path / "single", 3)) == 0
    ddp, single = _metrics(tmp_path / "ddp"), _metrics(tmp_path / "single")
    assert len(ddp) == len(single) == 3
    for a, b in zip(ddp, single, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], abs=0.03)
        assert a["val_loss"] == pytest.approx(b["val_loss"], abs=0.03)
    # one writer: the run directory is complete and single
    for name in ("model.pt", "model_float16.pt", "size.json", "best.pt", "last.pt"):
        assert (tmp_path / "ddp" / name).exists()

    # resume under torchrun continues exactly where the interrupted run stopped
    _torchrun(_args(tiny_corpus, tmp_path, tmp_path / "resumed", 2))
    _torchrun([*_args(tiny_corpus, tmp_path, tmp_path / "resumed", 3), "--resume"])
    resumed = _metrics(tmp_path / "resumed")
    assert [m["epoch"] for m in resumed] == [1, 2, 3]
    for a, b in zip(resumed, ddp, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-5)
