"""The engine settings: allocator, threads, mixed precision."""

import json
import os

import pytest
import torch

from tests.conftest import train_args
from tinyasc import engine
from tinyasc.cli import main
from tinyasc.config import load_config


def test_allocator_switches_and_respects_the_environment(monkeypatch):
    assert engine.tune_allocator(True) is True  # glibc: mallopt accepted
    assert engine.tune_allocator(False) is False  # glibc's defaults back
    monkeypatch.setenv("TINYASC_ALLOCATOR", "system")
    assert engine.tune_allocator() is False
    monkeypatch.delenv("TINYASC_ALLOCATOR")
    assert engine.tune_allocator() is True


_KEPT = """
import sys
import torch
from tinyasc import engine

def rss_gib():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 2**20

engine.tune_allocator(sys.argv[1] == "tuned")
x = torch.ones(int(2.5 * 2**30) // 4)  # 2.5 GiB, every page touched
del x
print(f"{rss_gib():.2f}")
"""


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads the resident size from /proc")
def test_freed_memory_stays_in_the_process_beyond_2_gib():
    """A freed 2.5 GiB tensor stays resident with the tuned allocator (the heap top is never trimmed;
    the largest positive threshold mallopt takes, 2 GiB, was exceeded by BC-ResNet c40's steps at
    batch 64 and more) and goes back to the system with glibc's defaults."""
    import subprocess
    import sys

    if not engine.tune_allocator(True):
        pytest.skip("not glibc: no mallopt")
    kept = {
        mode: float(
            subprocess.run(
                [sys.executable, "-c", _KEPT, mode], capture_output=True, text=True, check=True
            ).stdout
        )
        for mode in ("tuned", "system")
    }
    assert kept["tuned"] > 2.4, kept
    assert kept["system"] < 1.0, kept


def test_threads_leave_the_workers_their_cores(monkeypatch):
    monkeypatch.setattr(engine, "cores", lambda: 8)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert engine.compute_threads() == 8
    assert engine.compute_threads(workers=2) == 6
    assert engine.compute_threads(workers=12) == 1
    assert engine.compute_threads(workers=2, requested=3) == 3


def test_omp_num_threads_caps_the_threads(monkeypatch):
    """Two runs side by side with OMP_NUM_THREADS=1 take one core each, not two each."""
    monkeypatch.setattr(engine, "cores", lambda: 8)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert engine.compute_threads() == 1 and engine.compute_threads(workers=2) == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "4")
    assert engine.compute_threads() == 4 and engine.compute_threads(workers=6) == 2  # the lower bound wins
    assert engine.compute_threads(requested=3) == 3  # train.threads is the user's word
    for unusable in ("", "0", "four", "2,1"):
        monkeypatch.setenv("OMP_NUM_THREADS", unusable)
        assert engine.compute_threads() == 8, unusable


def test_omp_wait_policy_is_passive_unless_set(monkeypatch):
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    assert engine.prepare_process()["omp_wait_policy"] == "PASSIVE"
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    assert engine.prepare_process()["omp_wait_policy"] == "ACTIVE"


def test_numpy_blas_keeps_to_one_thread_unless_set(monkeypatch):
    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    assert engine.prepare_process()["openblas_threads"] == "1"
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "4")
    assert engine.prepare_process()["openblas_threads"] == "4"


def test_a_command_process_has_no_spinning_blas_thread():
    """numpy loaded after the engine's settings: a matrix product leaves no second thread burning CPU."""
    import subprocess
    import sys

    code = (
        "import os\n"
        "from tinyasc import engine\n"
        "engine.prepare_process()\n"
        "import numpy as np\n"
        "a = np.ones((64, 1025), np.float32); b = np.ones((1025, 501), np.float32)\n"
        "for _ in range(50): a @ b\n"
        "print(len(os.listdir('/proc/self/task')))\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert int(out.stdout) == 1  # OpenBLAS started no worker threads


def test_autocast_dtypes(monkeypatch):
    assert engine.autocast_dtype("float32", "cpu") is None
    assert engine.autocast_dtype("bfloat16", "cpu") == torch.bfloat16
    assert engine.autocast_dtype("float16", "cuda") == torch.float16
    with pytest.raises(ValueError, match="float16 needs a CUDA device"):
        engine.autocast_dtype("float16", "cpu")
    monkeypatch.setattr(engine, "native_bfloat16", lambda: False)
    assert engine.autocast_dtype("auto", "cpu") is None
    monkeypatch.setattr(engine, "native_bfloat16", lambda: True)
    assert engine.autocast_dtype("auto", "cpu") == torch.bfloat16
    assert engine.autocast_dtype("auto", "cpu", family_gains=False) is None  # e.g. MobileNetV2
    assert engine.autocast_dtype("auto", "cuda", family_gains=False) == torch.bfloat16


def test_auto_precision_follows_the_family(monkeypatch, capsys):
    """auto = bfloat16 only for families measured faster with it, and never for a QAT graph."""
    from tinyasc.models import create_model
    from tinyasc.models.layers import ASCModel
    from tinyasc.train.hooks import QuantizationAware
    from tinyasc.train.run import mixed_precision

    monkeypatch.setattr(engine, "native_bfloat16", lambda: True)
    cfg = load_config("configs/baseline.yaml", [])
    cpu = torch.device("cpu")
    assert cfg.train.precision == "auto"  # the default
    for name in ["dcase2021_baseline", "bcresnet_asc_c20", "mobilenetv2_s", "cpmobile_dcase2024"]:
        assert mixed_precision(cfg, cpu, create_model(name), [], False) == (torch.bfloat16, None), name

    class Undeclared(ASCModel):  # a family that has not measured bfloat16 trains in float32
        def __init__(self):
            super().__init__(40, 500, "undeclared")

    assert mixed_precision(cfg, cpu, Undeclared(), [], False) == (None, None)
    # the run log says which depthwise convolutions stay float32 (MobileNetV2-s: its three strided ones)
    mixed_precision(cfg, cpu, create_model("mobilenetv2_s"), [], True)
    mixed_precision(cfg, cpu, create_model("bcresnet_asc_c20"), [], True)  # (3,1) / (1,3), stride 1: none
    assert capsys.readouterr().out.splitlines() == [
        "precision: forward pass in bfloat16 autocast, its 3 strided or wider-than-3x3 depthwise "
        "convolution(s) in float32 (train.precision=auto)",
        "precision: forward pass in bfloat16 autocast (train.precision=auto)",
    ]
    assert mixed_precision(cfg, torch.device("cuda"), Undeclared(), [], False)[0] == torch.bfloat16
    qat = QuantizationAware.__new__(QuantizationAware)  # only its type matters here
    for device in ("cpu", "cuda"):  # no device is touched: only the choice is asked for
        qat_choice = mixed_precision(
            cfg, torch.device(device), create_model("dcase2021_baseline"), [qat], False
        )
        assert qat_choice == (None, None), device
    monkeypatch.setattr(engine, "native_bfloat16", lambda: False)
    assert mixed_precision(cfg, cpu, create_model("dcase2021_baseline"), [], False) == (None, None)


def test_bfloat16_training_runs_and_says_so(tiny_corpus, tmp_path, capsys):
    args = train_args(tiny_corpus, tmp_path / "run", tmp_path / "cache", 2, ["train.precision=bfloat16"])
    args.remove("--quiet")
    assert main(args) == 0
    out = capsys.readouterr().out
    assert (
        "precision: forward pass in bfloat16 autocast (train.precision=bfloat16)" in out
        and "torch thread(s) on" in out
    )
    records = [json.loads(ln) for ln in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert all(r["train_loss"] == r["train_loss"] for r in records)  # finite, not NaN
    bad = train_args(tiny_corpus, tmp_path / "run16", tmp_path / "cache", 1, ["train.precision=float16"])
    assert main(bad) == 2
    assert "float16 needs a CUDA device" in capsys.readouterr().err


@pytest.mark.slow
def test_compiled_training_ships_the_plain_model(trained_run, tiny_corpus, tmp_path, capsys):
    plain, _ = trained_run  # the same 2-epoch baseline recipe, uncompiled
    args = train_args(tiny_corpus, tmp_path / "run", tmp_path / "cache", 2, ["train.compile=true"])
    args.remove("--quiet")
    assert main(args) == 0
    assert "compile: training forward through torch.compile" in capsys.readouterr().out
    ours = torch.load(tmp_path / "run" / "model.pt", weights_only=True)["state"]
    theirs = torch.load(plain / "model.pt", weights_only=True)["state"]
    assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in theirs.items()}
    loss = [
        json.loads(ln)["train_loss"] for ln in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    ]
    ref = [json.loads(ln)["train_loss"] for ln in (plain / "metrics.jsonl").read_text().splitlines()]
    # same seed and batches; the compiled dropout draws other masks, so equal only roughly
    assert loss[0] == pytest.approx(ref[0], rel=0.15)
    assert main(["evaluate", str(tmp_path / "run"), "--quiet"]) == 0


def test_compile_without_a_compiler_says_what_to_install(tiny_corpus, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("shutil.which", lambda name: None)
    args = train_args(tiny_corpus, tmp_path / "run", tmp_path / "cache", 1, ["train.compile=true"])
    assert main(args) == 2
    assert "train.compile=true: torch.compile on the CPU needs a C++ compiler" in capsys.readouterr().err


def test_bfloat16_runs_the_slow_depthwise_convolutions_in_float32():
    """Under bfloat16 autocast on the CPU a strided or 5x5 depthwise convolution is computed in
    float32 and handed on in bfloat16; a 3x3 stride-1 one, and every other convolution, stays bfloat16."""
    import torch.nn.functional as F

    from tinyasc.train.loop import autocast

    torch.manual_seed(0)
    x = torch.randn(2, 8, 16, 20, requires_grad=True)
    w3, w5, dense = torch.randn(8, 1, 3, 3), torch.randn(8, 1, 5, 5), torch.randn(4, 8, 3, 3)
    with autocast("cpu", torch.bfloat16):
        strided = F.conv2d(x, w3, stride=2, padding=1, groups=8)
        wide = F.conv2d(x, w5, padding=2, groups=8)
        plain = F.conv2d(x, w3, padding=1, groups=8)
        full = F.conv2d(x, dense, stride=2, padding=1)
    with autocast("cpu", torch.bfloat16, depthwise_float32=False):
        plain_before = F.conv2d(x, w3, padding=1, groups=8)
        strided_before = F.conv2d(x, w3, stride=2, padding=1, groups=8)
    assert {t.dtype for t in (strided, wide, plain, full)} == {torch.bfloat16}
    with torch.no_grad():
        assert torch.equal(strided, F.conv2d(x, w3, stride=2, padding=1, groups=8).to(torch.bfloat16))
        assert torch.equal(wide, F.conv2d(x, w5, padding=2, groups=8).to(torch.bfloat16))
    assert not torch.equal(strided, strided_before)  # bfloat16 arithmetic rounds the inputs first
    assert torch.equal(plain, plain_before)
    (strided.float().sum() + wide.float().sum()).backward()
    assert x.grad is not None and x.grad.dtype == torch.float32 and torch.isfinite(x.grad).all()
    with torch.no_grad(), autocast("cpu", torch.bfloat16):  # evaluation: autocast's own arithmetic
        assert torch.equal(F.conv2d(x, w3, stride=2, padding=1, groups=8), strided_before)
