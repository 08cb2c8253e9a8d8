"""The GPU path (opt-in: ``pytest -m gpu`` on a machine with CUDA). Skipped where there is no CUDA."""

import json

import pytest
import torch

from tests.conftest import train_args
from tinyasc.cli import main

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def _records(run):
    return [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]


def test_cuda_training_reads_ahead_and_autocasts(tiny_corpus, tmp_path, capsys):
    args = train_args(tiny_corpus, tmp_path / "run", tmp_path / "cache", 2, ["train.precision=auto"])
    args.remove("--quiet")
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "0 batch reader process(es)" not in out and "batch reader process(es)" in out
    assert "bfloat16 autocast" in out
    assert all(r["train_loss"] == r["train_loss"] for r in _records(tmp_path / "run"))
    assert main(["evaluate", str(tmp_path / "run"), "--quiet"]) == 0


def test_cuda_float16_with_a_scaler_and_the_logmel_on_the_gpu(tiny_corpus, tmp_path):
    extra = ["train.precision=float16", "augment.roll_max_seconds=1", "train.compile=true"]
    assert main(train_args(tiny_corpus, tmp_path / "run", tmp_path / "cache", 2, extra)) == 0
    assert all(r["train_loss"] == r["train_loss"] for r in _records(tmp_path / "run"))


def test_cuda_matches_cpu_in_float32(tiny_corpus, tmp_path):
    losses = {}
    for device in ("cpu", "cuda"):
        run = tmp_path / device
        extra = [f"train.device={device}", "train.precision=float32", "train.loader_workers=0"]
        assert main(train_args(tiny_corpus, run, tmp_path / "cache", 1, extra)) == 0
        losses[device] = _records(run)[0]["train_loss"]
    assert losses["cuda"] == pytest.approx(losses["cpu"], rel=0.05)  # dropout masks differ by device
