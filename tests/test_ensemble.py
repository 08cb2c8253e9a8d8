"""Budget ensembles: members averaged as one shipped model, sized over all members."""

import json

import numpy as np
import pytest

from tests.conftest import copy_run, train_args
from tinyasc.cli import main
from tinyasc.evaluate.predict import feature_logits, load_model, softmax


@pytest.fixture(scope="module")
def members(trained_run, tiny_corpus, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ens")
    first = copy_run(trained_run[0], tmp / "a")
    small = ["train.seed=1", "model.params={filters: [8, 8, 16], dense: 40}"]  # a smaller second member
    assert main(train_args(tiny_corpus, tmp / "b", trained_run[1] / "cache", 2, small)) == 0
    return first, tmp / "b", tmp


def test_an_ensemble_is_one_model_of_its_members(members, capsys):
    a, b, tmp = members
    out = tmp / "ens"
    code = main(["ensemble", str(a), str(b), "--out", str(out), "--quiet"])
    assert code == 0, capsys.readouterr()
    size = json.loads((out / "size.json").read_text())
    parts = [json.loads((r / "size.json").read_text())["nonzero_bytes"] for r in (a, b)]
    assert size["model_file"] == "model_ensemble.pt" and size["nonzero_bytes"] == sum(parts)
    assert any(n.startswith("member m1:") for n in size["notes"]) and size["layers"][0]["name"].startswith(
        "m0."
    )
    # its probabilities are the mean of the members' on the same features
    ens, ma, mb = load_model(out), load_model(a), load_model(b)
    from tinyasc.data.cache import cached_features
    from tinyasc.data.dataset import cached_clips, load_index
    from tinyasc.rundir import RunDir

    cfg = RunDir(a).config()
    index = load_index(cfg.data)
    clips = cached_clips(index, cfg.data)
    feats = cached_features(ma.frontend, [index.path(c) for c in clips], cfg.data.cache_dir)
    rows = np.arange(5)
    mean = (softmax(feature_logits(ma, feats, rows)) + softmax(feature_logits(mb, feats, rows))) / 2
    np.testing.assert_allclose(softmax(feature_logits(ens, feats, rows)), mean, atol=1e-6)
    assert json.loads((out / "metrics.json").read_text())["storage"] == "ensemble"
    assert main(["size", str(out)]) == 0
    capsys.readouterr()


def test_ensemble_exports_and_refuses_mismatched_members(members, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    a, b, tmp = members
    out = tmp / "ens2"
    assert main(["ensemble", str(a), str(b), "--out", str(out), "--no-evaluate", "--quiet"]) == 0
    assert main(["export", str(out), "-o", str(tmp_path / "e.onnx")]) == 0
    assert json.loads((tmp_path / "e.onnx.json").read_text())["check"]["same_decisions"] == 1.0
    assert main(["ensemble", str(a), "--out", str(tmp_path / "one")]) == 2
    assert "at least two members" in capsys.readouterr().err
    assert main(["ensemble", str(a), str(a), str(b), "--out", str(tmp_path / "big"), "--no-evaluate"]) == 1
    assert "FAIL: limit 128,000 bytes" in capsys.readouterr().out  # the limit applies to the sum


def test_an_ensemble_of_int8_members(trained_run, tmp_path):
    from tinyasc.cli import main
    from tinyasc.rundir import RunDir

    run, _ = trained_run
    members = []
    for k in range(2):
        out = tmp_path / f"int8_{k}"
        assert (
            main(
                ["compress", str(run), "--method", "int8-ptq", "--out", str(out), "--no-evaluate", "--quiet"]
            )
            == 0
        )
        members.append(str(out))
    assert main(["ensemble", *members, "--out", str(tmp_path / "ens")]) == 0
    size = RunDir(tmp_path / "ens").size()
    assert size["nonzero_bytes"] == 2 * RunDir(members[0]).size()["nonzero_bytes"]
    assert RunDir(tmp_path / "ens").evaluation()["overall"]["accuracy"] >= 0
