"""The validation part is an explicit choice, stated in the run, and never eats the training data."""

import json

import pytest
import torch

from tests.conftest import train_args
from tinyasc.cli import main
from tinyasc.config import load_config
from tinyasc.data.dataset import choose_validation
from tinyasc.data.index import Clip, DataError, load_tau


def _generic(n_per_class=10, folds=5):
    return [
        Clip(f"{c}{i}.wav", c, "", "", "", "unknown", "train", str(i % folds + 1))
        for c in ("dog", "rain")
        for i in range(n_per_class)
    ]


def _data(*overrides):
    return load_config(None, list(overrides)).data


def test_auto_follows_the_dataset(tiny_corpus):
    train, val, rec = choose_validation(_generic(), _data())
    assert rec["method"] == "fold" and rec["fold"] == "5" and {c.fold for c in val} == {"5"}
    assert len(train) == 16 and len(val) == 4  # four folds train, one validates
    no_folds = [Clip(c.filename, c.scene, "", "", "", "unknown", "train") for c in _generic()]
    train, val, rec = choose_validation(no_folds, _data())
    assert rec["method"] == "fraction" and len(val) == 6  # 0.3 of each class's 10 files
    tau = load_tau(tiny_corpus).split("train")
    train, val, rec = choose_validation(tau, _data())
    assert rec["method"] in ("location", "fraction") and rec["train"] >= 0.5 * rec["of"]


def test_a_small_corpus_falls_back_from_locations_and_says_so(tiny_corpus, caplog):
    tau = load_tau(tiny_corpus).split("train")
    loc_train, _ = __import__("tinyasc.data.index", fromlist=["x"]).validation_split(tau, 0.3, 0)
    train, val, rec = choose_validation(tau, _data())
    if len(loc_train) < 0.5 * len(tau):  # the DCASE rule would train on too few: a file fraction instead
        assert rec["method"] == "fraction" and "too few locations" in rec["note"]
    else:
        assert rec["method"] == "location"
    assert len(train) + len(val) == len(tau) and len(train) >= 0.5 * len(tau)


def test_explicit_choices_and_refusals():
    clips = _generic()
    train, val, rec = choose_validation(clips, _data("data.validation=fold", "data.validation_fold=2"))
    assert {c.fold for c in val} == {"2"} and rec["fold"] == "2"
    train, val, rec = choose_validation(clips, _data("data.validation=none"))
    assert val == [] and len(train) == 20 and rec["method"] == "none"
    with pytest.raises(
        DataError, match=r"4 of 20 training clips \(20%\) would train, below data.min_train_share=0.5"
    ):
        choose_validation(clips, _data("data.validation=fraction", "data.validation_fraction=0.8"))
    with pytest.raises(DataError, match="validation_fold='9': not a training fold"):
        choose_validation(clips, _data("data.validation=fold", "data.validation_fold=9"))
    single = [c for c in clips if c.scene == "dog"] + [Clip("r.wav", "rain", "", "", "", "u", "train", "5")]
    with pytest.raises(DataError, match=r"no training clip left of class\(es\) \['rain'\]"):
        choose_validation(single, _data("data.validation=fold"))


def test_training_without_validation_keeps_the_last_epoch(tiny_corpus, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(train_args(tiny_corpus, run, tmp_path / "cache", 2, ["data.validation=none"])) == 0
    assert "selected epoch 2 (the last epoch, no validation part)" in capsys.readouterr().out
    records = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["val_accuracy"] for r in records] == [None, None] and records[-1]["best_epoch"] == 2
    split = json.loads((run / "splits.json").read_text())
    assert split == {"method": "none", "train": 60, "validation": 0, "of": 60, "evaluate": 90}
    assert main(["calibrate", str(run), "--quiet"]) == 2
    assert "trained without a validation part" in capsys.readouterr().err


def test_select_metric_logloss_keeps_the_lowest_validation_loss(tiny_corpus, tmp_path):
    run = tmp_path / "run"
    extra = ["train.select_metric=logloss", "train.lr=0.01"]  # a large rate: the loss moves between epochs
    assert main(train_args(tiny_corpus, run, tmp_path / "cache", 4, extra)) == 0
    records = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]
    losses = [r["val_loss"] for r in records]
    assert records[-1]["best_epoch"] == 1 + losses.index(min(losses))  # first epoch on ties
    assert torch.load(run / "best.pt", weights_only=True)["epoch"] == records[-1]["best_epoch"]


def test_better_is_strict_and_follows_the_metric():
    from tinyasc.train.run import better

    best = {"epoch": 3, "val_accuracy": 0.5, "val_loss": 1.0}
    assert better({"val_accuracy": 0.4, "val_loss": 0.9}, best, "logloss")
    assert not better({"val_accuracy": 0.9, "val_loss": 1.0}, best, "logloss")  # a tie keeps epoch 3
    assert better({"val_accuracy": 0.6, "val_loss": 2.0}, best, "accuracy")
    assert not better({"val_accuracy": 0.5, "val_loss": 0.1}, best, "accuracy")
    assert better({"val_accuracy": 0.0, "val_loss": 5.0}, {"epoch": 0, "val_accuracy": -1.0}, "logloss")
