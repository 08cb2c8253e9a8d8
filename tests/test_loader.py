"""Batch reader processes (train.loader_workers): the same batches as in-process reading, in order."""

import json
import pickle

import numpy as np
import pytest
import torch

from tests.conftest import train_args
from tinyasc.cli import main
from tinyasc.data.dataset import batches
from tinyasc.data.loader import BatchLoader, _Rows
from tinyasc.engine import loader_workers


@pytest.fixture()
def cache_file(tmp_path):
    feats = np.lib.format.open_memmap(tmp_path / "f.npy", mode="w+", dtype=np.float16, shape=(50, 4, 6))
    feats[:] = np.random.default_rng(0).standard_normal(feats.shape)
    feats.flush()
    return np.load(tmp_path / "f.npy", mmap_mode="r")


def test_workers_read_the_batches_of_the_training_process_in_order(cache_file):
    rows = np.arange(3, 43)  # the training clips' rows of the cache
    labels = np.arange(40) % 7
    loader = BatchLoader(cache_file, workers=2, pin_memory=False, seed=0)
    for epoch in (1, 2, 3):  # persistent workers: a new order each epoch reaches them
        order = np.random.default_rng(epoch).permutation(40)
        got = list(loader.epoch(rows[order], labels[order], 16))
        want = list(batches(cache_file, rows[order], labels[order], 16))
        assert [len(b[1]) for b in got] == [16, 16, 8]
        for (x, y, pos), (x0, y0, pos0) in zip(got, want, strict=True):
            assert torch.equal(x, x0) and torch.equal(y, y0) and np.array_equal(pos, pos0)


def test_the_workers_get_the_path_of_the_cache_not_its_contents(cache_file):
    assert len(pickle.dumps(_Rows(cache_file))) < 1000 < cache_file.nbytes
    small = np.zeros((2, 3), dtype=np.float16)  # an in-memory source travels as it is
    assert np.array_equal(pickle.loads(pickle.dumps(_Rows(small)))._source(), small)


def test_reader_policy_fits_the_cores(monkeypatch):
    monkeypatch.setattr("tinyasc.engine.cores", lambda: 16)
    assert loader_workers(None, "cpu") == 0  # the model needs the cores
    assert loader_workers(None, "cuda") == 4
    assert loader_workers(None, "cuda", processes=8) == 1  # 8 ranks share 16 cores
    assert loader_workers(3, "cpu") == 3
    monkeypatch.setattr("tinyasc.engine.cores", lambda: 2)
    assert loader_workers(None, "cuda") == 1


def test_training_with_reader_processes_is_the_same_training(tiny_corpus, tmp_path, capsys):
    losses = {}
    for workers in (0, 1):
        run = tmp_path / f"run{workers}"
        extra = [f"train.loader_workers={workers}", "train.threads=1"]
        args = train_args(tiny_corpus, run, tmp_path / "cache", 2, extra)
        args.remove("--quiet")
        assert main(args) == 0
        assert f"{workers} batch reader process(es)" in capsys.readouterr().out
        records = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]
        losses[workers] = [(r["train_loss"], r["val_loss"]) for r in records]
    assert losses[0] == losses[1]
