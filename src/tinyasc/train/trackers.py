"""Experiment-tracker sinks (TensorBoard, MLflow) behind the ``[tracking]`` extra.

``metrics.jsonl`` stays the source of truth: a tracker mirrors each epoch's line as it is written and
never feeds anything back (a resumed run rewrites metrics.jsonl from its checkpoint; a tracker then
shows the repeated epochs again). Both write into the run directory (``RunDir.tracker_dir``), so no
server is needed: ``tensorboard --logdir RUN/tensorboard``,
``mlflow ui --backend-store-uri sqlite:///RUN/mlflow.db``.
"""

from __future__ import annotations

from tinyasc.config import Config, ConfigError, flatten, plain
from tinyasc.rundir import RunDir


class Tracker:
    def log(self, record: dict) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


def _numbers(record: dict) -> dict[str, float]:
    return {k: float(v) for k, v in record.items() if isinstance(v, int | float) and k != "epoch"}


class TensorBoard(Tracker):
    def __init__(self, run: RunDir):
        try:
            from torch.utils.tensorboard import SummaryWriter  # needs the tensorboard package
        except ImportError:
            raise ConfigError(
                "train.trackers: tensorboard needs the tensorboard package: pip install 'tinyasc[tracking]'"
            ) from None
        self.writer = SummaryWriter(log_dir=str(run.tracker_dir("tensorboard")))

    def log(self, record: dict) -> None:
        for key, value in _numbers(record).items():
            self.writer.add_scalar(key, value, record["epoch"])
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class MLflow(Tracker):
    def __init__(self, run: RunDir, cfg: Config):
        try:
            import mlflow
        except ImportError:
            raise ConfigError(
                "train.trackers: mlflow needs the mlflow package: pip install 'tinyasc[tracking]'"
            ) from None
        self.mlflow = mlflow
        # a SQLite store in the run directory: no server; MLflow's plain file store is deprecated
        mlflow.set_tracking_uri(f"sqlite:///{run.tracker_dir('mlflow').resolve()}")
        self.active = mlflow.start_run(run_name=run.path.name)
        params = flatten(plain(cfg.to_dict()))
        mlflow.log_params({k: str(v)[:500] for k, v in params.items()})

    def log(self, record: dict) -> None:
        self.mlflow.log_metrics(_numbers(record), step=record["epoch"])

    def close(self) -> None:
        self.mlflow.end_run()


def make_trackers(cfg: Config, run: RunDir) -> list[Tracker]:
    """The trackers ``train.trackers`` names (checked at load: tensorboard, mlflow)."""
    made: list[Tracker] = []
    for name in cfg.train.trackers:
        made.append(TensorBoard(run) if name == "tensorboard" else MLflow(run, cfg))
    return made
