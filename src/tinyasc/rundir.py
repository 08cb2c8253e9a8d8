"""The run directory: every file a run holds, named here and nowhere else.

A run directory describes itself; everything needed to evaluate, predict, compress or export is loaded
from it:

  config.yaml           the resolved config
  metrics.jsonl         one JSON line per epoch (training and validation loss / accuracy)
  last.pt               full training state for --resume (model, optimiser, epoch, RNG, hooks, best)
  best.pt               weights of the best selectable epoch
  model.pt              the selected float32 (or fake-quantised QAT) model file (``artifact.py``)
  model_float16.pt ...  the model as it ships, when its storage is not model.pt's (``MODEL_FILES``)
  size.json, size.txt   the DCASE 2021 size report of what ships; size.json names the shipped file
  splits.json           the clips that trained, validated and are evaluated, and how they were chosen
  device_transfer.json  the learned device transfers of device translation
  calibration.json      the temperature of ``tinyasc calibrate``
  metrics.json, report.md, confusion.png, devices.png, output.csv   the evaluation of ``tinyasc evaluate``
  compress.json         what ``tinyasc compress`` did to make the run
  device_heads.json     what ``tinyasc device-heads`` fine-tuned (devices, clips, head layers) and scored
  model_ensemble.pt, ensemble.json  an ensemble run's members, stored, and its record
  model[_PRECISION].onnx  the default place of ``tinyasc export``
  tensorboard/, mlflow.db  what the tracker sinks of ``train.trackers`` mirror of metrics.jsonl

``tinyasc compress`` builds a run in ``NAME.partial`` and renames it when complete (``staging``).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import yaml

from tinyasc import artifact
from tinyasc.artifact import LoadedModel
from tinyasc.config import Config, ConfigError, config_from_dict, save_config
from tinyasc.io import (
    atomic_write_json,
    atomic_write_text,
    load_checkpoint,
    save_checkpoint,
)
from tinyasc.storage import Storage, shipped_storage

log = logging.getLogger(__name__)

MODEL_FILES = {
    Storage.FLOAT32: "model.pt",
    Storage.QAT: "model.pt",
    Storage.FLOAT16: "model_float16.pt",
    Storage.INT8: "model_int8.pt",
    Storage.BINARY: "model_binary.pt",
    Storage.ENSEMBLE: "model_ensemble.pt",
}


class RunLockedError(ValueError):
    """Another process is writing the run directory."""


class RunDir:
    """A run directory at ``path`` (which need not exist yet)."""

    CONFIG = "config.yaml"
    METRICS = "metrics.jsonl"
    LAST = "last.pt"
    BEST = "best.pt"
    SIZE_JSON = "size.json"
    SIZE_TXT = "size.txt"
    DEVICE_TRANSFER = "device_transfer.json"
    CALIBRATION = "calibration.json"
    EVALUATION = "metrics.json"
    REPORT = "report.md"
    CONFUSION = "confusion.png"
    DEVICES_PLOT = "devices.png"
    OUTPUT = "output.csv"
    COMPRESS = "compress.json"
    DEVICE_HEADS = "device_heads.json"
    ENSEMBLE = "ensemble.json"
    SPLITS = "splits.json"
    TRACKERS = {"tensorboard": "tensorboard", "mlflow": "mlflow.db"}  # where the tracker sinks write
    PARTIAL_SUFFIX = ".partial"
    LOCK = ".lock"

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    # --- one writer at a time -----------------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self, what: str) -> Iterator[None]:
        """Hold the run's write lock while ``what`` (e.g. "tinyasc train") writes it.

        A second writer fails at once with a ``RunLockedError`` naming the holder. The lock is an
        ``flock`` on ``.lock``: the kernel releases it when its holder exits, even by kill -9, so a
        crash never leaves the run locked. Temporary files of interrupted writes are removed here, since
        no one else can be writing them.
        """
        self.path.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path / self.LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
                raise RunLockedError(
                    f"{self.path}: {holder} is writing this run; wait for it to finish or choose another folder"
                ) from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{what} (pid {os.getpid()})".encode(), 0)
            self.remove_temporaries()
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def remove_temporaries(self) -> None:
        """Delete ``.NAME.*.tmp`` files of writes that were interrupted (atomic writes leave no others)."""
        for tmp in self.path.glob(".*.tmp"):
            tmp.unlink(missing_ok=True)
            log.info("removed %s, left by an interrupted write", tmp)

    # --- the config ---------------------------------------------------------------------------------
    def config(self) -> Config:
        path = self.path / self.CONFIG
        if not path.exists():
            raise ConfigError(f"{self.path}: not a tinyasc run (no {self.CONFIG})")
        return config_from_dict(yaml.safe_load(path.read_text()))

    def save_config(self, cfg: Config) -> None:
        save_config(cfg, self.path / self.CONFIG)

    @property
    def is_run(self) -> bool:
        """A config and a float model file: a finished run that compress and export can read."""
        return (self.path / self.CONFIG).exists() and self.float_model_path.exists()

    # --- model files --------------------------------------------------------------------------------
    @property
    def float_model_path(self) -> Path:
        """``model.pt``: the selected float (or QAT) model every stored form is made from."""
        return self.path / MODEL_FILES[Storage.FLOAT32]

    @property
    def shipped_model_path(self) -> Path:
        """The model file the run ships (named in size.json), else model.pt."""
        size = self.size()
        return self.path / size["model_file"] if size else self.float_model_path

    def load_model(self) -> LoadedModel:
        """The shipped model, ready to predict."""
        return artifact.load_model(self.shipped_model_path)

    def save_float_model(self, art: dict) -> None:
        artifact.save(art, self.float_model_path)

    def ship(self, art: dict, model, quantize: str, calibration=None, rules: str = "dcase2021") -> str:
        """Store the model as ``quantize`` ships it, write its size report and the verdict of ``rules``
        (size.json "rules"); returns the file name."""
        stored, differs = artifact.stored_artifact(art, model, quantize, calibration)
        name = MODEL_FILES[shipped_storage(quantize)]
        if differs:
            artifact.save(stored, self.path / name)
        self._write_size(stored, name, rules)
        return name

    def _write_size(self, stored: dict, name: str, rules: str) -> None:
        report = artifact.size_report(stored)
        text = report.table()
        record = dict(report.to_dict(), model_file=name)
        if rules != "dcase2021":  # the 2021 verdict is the table itself
            v = artifact.rules_verdict(stored, rules, report)
            record["rules"] = v.to_dict()
            text += "\n\n" + v.table()
        atomic_write_json(self.path / self.SIZE_JSON, record)
        atomic_write_text(self.path / self.SIZE_TXT, text + "\n")

    def onnx_path(self, precision: str) -> Path:
        """Where ``tinyasc export`` writes by default: model.onnx, model_float16.onnx, model_int8.onnx."""
        return self.path / ("model.onnx" if precision == "float32" else f"model_{precision}.onnx")

    def ship_stored(self, stored: dict, rules: str = "dcase2021") -> str:
        """Write a model file that is already in its stored form (an ensemble) and its size report."""
        name = MODEL_FILES[artifact.storage_of(stored)]
        artifact.save(stored, self.path / name)
        self._write_size(stored, name, rules)
        return name

    @property
    def c_header_path(self) -> Path:
        """Where ``tinyasc export --format c`` writes by default."""
        return self.path / "model.h"

    def size(self) -> dict:
        """size.json ({} before the run has shipped)."""
        return _read_json(self.path / self.SIZE_JSON)

    # --- training state -----------------------------------------------------------------------------
    @property
    def has_checkpoint(self) -> bool:
        return (self.path / self.LAST).exists()

    def save_last(self, state: dict) -> None:
        save_checkpoint(state, self.path / self.LAST)

    def load_last(self) -> dict:
        return load_checkpoint(self.path / self.LAST)

    def save_best(self, state: dict) -> None:
        save_checkpoint(state, self.path / self.BEST)

    def load_best(self) -> dict:
        return load_checkpoint(self.path / self.BEST)

    def metrics(self) -> list[dict]:
        """The epochs of metrics.jsonl. A last line cut short by a crash is left out (with a warning):
        its epoch was not checkpointed, so a resumed run trains it again; a broken line before the last
        is an error naming it."""
        path = self.path / self.METRICS
        if not path.exists():
            return []
        lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
        records = []
        for i, ln in enumerate(lines, start=1):
            try:
                records.append(json.loads(ln))
            except json.JSONDecodeError:
                if i < len(lines):
                    raise ValueError(f"{path}:{i}: not a JSON line; the file is damaged") from None
                log.warning("%s:%d: a line cut short by an interruption; left out", path, i)
        return records

    def append_metrics(self, record: dict) -> None:
        with open(self.path / self.METRICS, "a") as f:
            f.write(json.dumps(record) + "\n")

    def truncate_metrics(self, last_epoch: int) -> None:
        """Keep the epochs up to ``last_epoch`` (a resumed run rewrites the ones after its checkpoint)."""
        path = self.path / self.METRICS
        if not path.exists():
            return
        keep = [r for r in self.metrics() if r["epoch"] <= last_epoch]
        atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in keep))

    def clear_metrics(self) -> None:
        (self.path / self.METRICS).unlink(missing_ok=True)

    def tracker_dir(self, name: str) -> Path:
        """Where a tracker sink writes: the tensorboard/ folder or the mlflow.db SQLite store."""
        return self.path / self.TRACKERS[name]

    def save_splits(self, record: dict) -> None:
        """How many clips trained, validated and are evaluated, and how the validation part was chosen."""
        atomic_write_json(self.path / self.SPLITS, record)

    def save_device_transfer(self, transfers: dict) -> None:
        atomic_write_json(self.path / self.DEVICE_TRANSFER, transfers)

    # --- calibration and evaluation -----------------------------------------------------------------
    @property
    def temperature(self) -> float:
        """The calibration temperature (1.0 when the run is not calibrated)."""
        record = _read_json(self.path / self.CALIBRATION)
        return float(record["temperature"]) if record else 1.0

    def save_calibration(self, record: dict) -> None:
        atomic_write_json(self.path / self.CALIBRATION, record)

    def evaluation(self) -> dict:
        """metrics.json of ``tinyasc evaluate`` ({} before it ran)."""
        return _read_json(self.path / self.EVALUATION)

    @property
    def report_paths(self) -> dict[str, Path]:
        """Where ``tinyasc evaluate`` writes its metrics, report, confusion plot and output.csv."""
        return {
            "metrics": self.path / self.EVALUATION,
            "report": self.path / self.REPORT,
            "confusion": self.path / self.CONFUSION,
            "devices": self.path / self.DEVICES_PLOT,
            "output": self.path / self.OUTPUT,
        }

    # --- compress -----------------------------------------------------------------------------------
    def staging(self) -> RunDir:
        """The folder a new run is built in before it is renamed to this one."""
        return RunDir(self.path.with_name(self.path.name + self.PARTIAL_SUFFIX))

    def save_device_heads_record(self, record: dict) -> None:
        atomic_write_json(self.path / self.DEVICE_HEADS, record)

    def save_compress_record(self, record: dict) -> None:
        atomic_write_json(self.path / self.COMPRESS, record)

    def save_ensemble_record(self, record: dict) -> None:
        atomic_write_json(self.path / self.ENSEMBLE, record)


def temperature_of(path: str | Path) -> float:
    """The temperature of a run, or of the run a model file lies in (1.0 when not calibrated)."""
    path = Path(path)
    return RunDir(path if path.is_dir() else path.parent).temperature


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}
