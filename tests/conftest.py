import shutil
from pathlib import Path

import pytest

from tinyasc.data.synth import SynthSpec, write_corpus

REAL_SETUP = (
    Path(__file__).resolve().parents[1] / "src" / "tinyasc" / "data" / "resources" / "evaluation_setup"
)


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
