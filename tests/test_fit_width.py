"""Classifier heads that fit: a variant's widths scaled to a byte target for a class count."""

from __future__ import annotations

import pytest

from tests.conftest import train_args
from tinyasc import artifact
from tinyasc.cli import main
from tinyasc.compress.size import model_size
from tinyasc.config import ConfigError, load_config
from tinyasc.models import create_model
from tinyasc.rundir import RunDir
from tinyasc.zoo import fit_width


def test_a_budget_variant_narrows_for_many_classes():
    # bcresnet_asc_c28 stores 147,008 bytes at float16 for 200 classes; width 24 is the widest that fits
    assert model_size(create_model("bcresnet_asc_c28", n_classes=200), "float16").bytes == 147_008
    params, nbytes = fit_width("bcresnet_asc_c28", 200, 128_000)
    assert params == {"width": 24} and nbytes == 117_472
    assert model_size(create_model("bcresnet_asc_c28", n_classes=200, **params), "float16").bytes == nbytes
    # MobileNet's stage channels scale too; the result always fits and builds
    params, nbytes = fit_width("mobilenetv2_s", 200, 128_000)
    assert nbytes <= 128_000 and params["setting"][-1][1] < 48
    with pytest.raises(ValueError, match="does not fit 1,000 bytes .* even at its narrowest"):
        fit_width("dcase2021_baseline", 10, 1_000)


def test_size_fit_bytes_on_the_command_line(capsys):
    assert main(["size", "bcresnet_asc_c28", "--classes", "200", "--fit-bytes", "128000"]) == 0
    out = capsys.readouterr().out
    assert 'model.params={"width": 24} fits 128,000 bytes for 200 classes' in out and "117,472" in out
    assert main(["size", "bcresnet_asc_c28", "--classes", "200"]) == 1  # without it: over the limit


def test_training_fits_the_widths_before_it_starts(tiny_corpus, tmp_path, capsys):
    run = tmp_path / "run"
    args = train_args(tiny_corpus, run, tmp_path / "cache", 1, ["model.fit_bytes=60000"])
    args.remove("--quiet")
    assert main(args) == 0
    assert "model.fit_bytes=60,000: dcase2021_baseline for 10 classes with" in capsys.readouterr().out
    art = artifact.load(RunDir(run).float_model_path)
    assert art["model_params"]["filters"] != (16, 16, 32)
    assert RunDir(run).size()["nonzero_bytes"] <= 60_000


def test_fit_bytes_refuses_one_bit_models():
    with pytest.raises(ConfigError, match="model.fit_bytes"):
        load_config(None, ["model.fit_bytes=60000", "model.params={binary: true}", "quantize=binary"])
