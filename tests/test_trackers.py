"""Tracker sinks mirror metrics.jsonl (TensorBoard and MLflow write into the run directory)."""

import json

import pytest

from tests.conftest import train_args
from tinyasc.cli import main
from tinyasc.config import ConfigError, load_config


def test_bad_tracker_name_fails_at_load():
    with pytest.raises(ConfigError, match="train.trackers: 'wandb'"):
        load_config(None, ["train.trackers=[wandb]"])


def test_tensorboard_and_mlflow_mirror_every_epoch(tiny_corpus, tmp_path):
    pytest.importorskip("tensorboard")
    mlflow = pytest.importorskip("mlflow")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    extra = ["train.trackers=[tensorboard, mlflow]"]
    assert main(train_args(tiny_corpus, run, tmp_path / "cache", 2, extra)) == 0
    truth = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]

    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    val = events.Scalars("val_accuracy")
    assert [e.step for e in val] == [1, 2]
    assert [e.value for e in val] == pytest.approx([r["val_accuracy"] for r in truth])

    mlflow.set_tracking_uri(f"sqlite:///{(run / 'mlflow.db').resolve()}")
    client = mlflow.tracking.MlflowClient()
    (found,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    history = client.get_metric_history(found.info.run_id, "train_loss")
    assert [h.step for h in history] == [r["epoch"] for r in truth]
    assert [h.value for h in history] == pytest.approx([r["train_loss"] for r in truth])
    assert found.data.params["model.name"] == "dcase2021_baseline"
