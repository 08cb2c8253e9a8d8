"""synth -> index -> train -> evaluate -> score -> size through the CLI, on the tiny corpus."""

import json

import pytest
import torch

from tinyasc.cli import main
from tinyasc.io import CheckpointError, load_checkpoint

from .conftest import train_args


def _train(corpus, run_dir, tmp_path, epochs, extra=(), resume=False):
    return main(
        train_args(corpus, run_dir, tmp_path / "cache", epochs, extra) + (["--resume"] if resume else [])
    )


@pytest.fixture()
def trained(run_copy):
    return run_copy


def test_cli_pipeline(tiny_corpus, trained, capsys, monkeypatch):
    run, tmp = trained
    assert main(["index", str(tiny_corpus)]) == 0
    for name in (
        "config.yaml",
        "metrics.jsonl",
        "last.pt",
        "best.pt",
        "model.pt",
        "model_float16.pt",
        "size.json",
    ):
        assert (run / name).exists(), name
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(ln)["epoch"] for ln in lines] == [1, 2]

    assert main(["evaluate", str(run)]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["overall"]["files"] == 90 and metrics["storage"] == "float16"
    assert set(metrics["group_wise"]) == {"real", "seen", "unseen"}
    assert (run / "confusion.png").read_bytes()[:4] == b"\x89PNG"
    report = (run / "report.md").read_text()
    assert "| **average** |" in report and "| S6 |" in report.replace(" S6 ", " S6 ")
    assert (run / "devices.png").read_bytes()[
        :4
    ] == b"\x89PNG" and "![accuracy and log loss per device]" in report
    assert "## Accuracy per class and device" in report and "| **class-wise mean** |" in report
    assert "Agresti-Coull" in report and report.startswith(
        "# dcase2021_baseline (float16) on the evaluate split"
    )
    for d, m in metrics["device_wise"].items():  # every device: an interval that is not degenerate
        assert m["accuracy_ci95"] > 0, d
    assert set(metrics["class_device_accuracy"]["park"]) == set(metrics["device_wise"])
    out = (run / "output.csv").read_text().splitlines()
    assert out[0].split("\t") == [
        "filename",
        "scene_label",
        "airport",
        "bus",
        "metro",
        "metro_station",
        "park",
        "public_square",
        "shopping_mall",
        "street_pedestrian",
        "street_traffic",
        "tram",
    ]
    assert len(out) == 91
    probs = [float(v) for v in out[1].split("\t")[2:]]
    assert abs(sum(probs) - 1) < 1e-6

    capsys.readouterr()
    ref = tiny_corpus / "evaluation_setup" / "fold1_evaluate.csv"
    assert main(["score", str(run / "output.csv"), str(ref), "--json"]) == 0
    scored = json.loads(capsys.readouterr().out)
    assert scored["overall"]["logloss"] == pytest.approx(metrics["overall"]["logloss"], rel=1e-6)
    assert scored["overall"]["accuracy"] == pytest.approx(metrics["overall"]["accuracy"])

    assert main(["size", str(run), "--json"]) == 0
    size = json.loads(capsys.readouterr().out)
    assert size["params"] == 46246 and size["bytes"] == 93004 and size["fits"]
    assert main(["size", str(run), "--precision", "float16-folded", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["bytes"] == 91980


def test_float16_model_is_what_is_evaluated(trained):
    run, _ = trained
    art = load_checkpoint(run / "model_float16.pt")
    assert art["state"]["conv2.weight"].dtype == torch.float16
    assert art["state"]["bn2.running_var"].dtype == torch.float32
    full = load_checkpoint(run / "model.pt")["state"]["conv2.weight"]
    assert torch.equal(art["state"]["conv2.weight"], full.half())


def test_resume_continues_identically(tiny_corpus, trained, tmp_path):
    run, tmp = trained
    assert _train(tiny_corpus, tmp_path / "r", tmp, 1) == 0
    assert _train(tiny_corpus, tmp_path / "r", tmp, 2, resume=True) == 0
    a = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    b = [json.loads(x) for x in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert len(b) == 2
    for x, y in zip(a, b, strict=True):
        assert x["train_loss"] == pytest.approx(y["train_loss"], rel=1e-5)
        assert x["val_loss"] == pytest.approx(y["val_loss"], rel=1e-5)


def test_existing_run_needs_resume_and_config_must_match(tiny_corpus, trained, capsys):
    run, tmp = trained
    assert _train(tiny_corpus, run, tmp, 2) == 2
    assert "--resume" in capsys.readouterr().err
    assert _train(tiny_corpus, run, tmp, 3, extra=["train.lr=0.5"], resume=True) == 2
    assert "different config" in capsys.readouterr().err


def test_checkpoint_loading_never_runs_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"x": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="not a readable tinyasc checkpoint"):
        load_checkpoint(tmp_path / "evil.pt")


def test_train_devices_restriction(tiny_corpus, tmp_path, capsys):
    from tinyasc.config import load_config
    from tinyasc.data.dataset import prepare_splits

    cfg = load_config(
        None, [f"data.root={tiny_corpus}", f"data.cache_dir={tmp_path}", "data.train_devices=[a, b]"]
    )
    splits = prepare_splits(cfg.data, cfg.frontend)
    assert {c.device for c in splits.train + splits.val} == {"a", "b"}
    assert len(splits.evaluate) == 90  # evaluation keeps every device
    assert _train(tiny_corpus, tmp_path / "none", tmp_path, 1, extra=["data.train_devices=[s9]"]) == 2
    assert "no training clips on these devices" in capsys.readouterr().err
