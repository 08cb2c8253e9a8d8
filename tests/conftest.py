import shutil
from pathlib import Path

import pytest

from tinyasc.data.synth import SynthSpec, write_corpus

REAL_SETUP = (
    Path(__file__).resolve().parents[1] / "src" / "tinyasc" / "data" / "resources" / "evaluation_setup"
)


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory):
    """Tests never write into the user's ~/.cache/tinyasc (feature caches, the model table)."""
    import os

    old = os.environ.get("TINYASC_CACHE")
    os.environ["TINYASC_CACHE"] = str(tmp_path_factory.mktemp("tinyasc_cache"))
    yield
    if old is None:
        os.environ.pop("TINYASC_CACHE", None)
    else:
        os.environ["TINYASC_CACHE"] = old


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    """One file per (split, scene, device): 60 train + 90 evaluate clips of 10 s, built once per session."""
    root = tmp_path_factory.mktemp("corpus") / "TAU-urban-acoustic-scenes-2020-mobile-development"
    write_corpus(root, SynthSpec(per_class_device=1, seed=0), workers=2)
    return root


@pytest.fixture()
def real_setup_root(tmp_path) -> Path:
    """A dataset root holding only the real evaluation_setup CSVs (no audio)."""
    shutil.copytree(REAL_SETUP, tmp_path / "evaluation_setup")
    return tmp_path


def train_args(corpus, run_dir, cache_dir, epochs, extra=()):
    return [
        "train",
        "configs/baseline.yaml",
        f"data.root={corpus}",
        f"data.cache_dir={cache_dir}",
        f"train.epochs={epochs}",
        "train.select_after=0",
        "train.eval_batch_size=32",
        *extra,
        "--run-dir",
        str(run_dir),
        "--quiet",
    ]


@pytest.fixture(scope="session")
def trained_run(tiny_corpus, tmp_path_factory) -> tuple[Path, Path]:
    """(run_dir, tmp) of a 2-epoch baseline run on the tiny corpus, shared by the tests."""
    from tinyasc.cli import main

    tmp = tmp_path_factory.mktemp("run")
    assert main(train_args(tiny_corpus, tmp / "run", tmp / "cache", 2)) == 0
    return tmp / "run", tmp


def copy_run(run: Path, dest: Path) -> Path:
    """A private copy of a run directory, for a test that writes into it (evaluate, calibrate, ...)."""
    shutil.copytree(run, dest)
    return dest


@pytest.fixture()
def run_copy(trained_run, tmp_path) -> tuple[Path, Path]:
    """(run_dir, tmp) like ``trained_run``, but a copy this test may change."""
    run, _ = trained_run
    return copy_run(run, tmp_path / "run"), tmp_path
