"""evaluate(run_dir) and score(output, reference): metrics per class, device and device group."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tinyasc.data.cache import cached_features
from tinyasc.data.dataset import cached_clips, load_index
from tinyasc.data.index import DataError, _read_rows
from tinyasc.data.tau import DEVICE_GROUPS, EVAL_DEVICE_GROUPS, SCENES, FileNameError, parse_filename
from tinyasc.evaluate.metrics import breakdown, log_loss
from tinyasc.evaluate.predict import feature_logits, softmax
from tinyasc.evaluate.report import format_output_csv, read_output_csv, write_reports
from tinyasc.io import atomic_write_text
from tinyasc.rundir import RunDir


def _groups_for(devices: list[str]) -> dict:
    return (
        EVAL_DEVICE_GROUPS
        if any(d in {"d", "s7", "s8", "s9", "s10", "s11"} for d in devices)
        else DEVICE_GROUPS
    )


def evaluate_run(run_dir: str | Path, progress: bool = False) -> dict:
    """Predict fold1_evaluate with the run's shipped model; write metrics.json, report.md, confusion.png, output.csv."""
    run = RunDir(run_dir)
    cfg = run.config()
    lm = run.load_model()
    index = load_index(cfg.data)
    clips = index.split("evaluate")
    if not clips:
        raise DataError(f"{cfg.data.root}: no evaluate split to evaluate on")
    # The run's cache entry (training fold, then evaluate) already holds these features.
    cached = cached_clips(index, cfg.data)
    paths = [index.path(c) for c in cached]
    feats = cached_features(lm.frontend, paths, cfg.data.cache_dir, cfg.data.workers, progress)
    rows = np.arange(len(cached) - len(clips), len(cached))
    logits = feature_logits(lm, feats, rows, devices=[c.device for c in clips])
    temperature = run.temperature
    probs = softmax(logits, temperature)
    y = np.array([lm.classes.index(c.scene) for c in clips])
    devices = [c.device for c in clips]
    metrics = breakdown(y, probs, devices, lm.classes, _groups_for(devices))
    metrics["temperature"] = temperature
    if temperature != 1.0:  # the calibration's effect on the test split, reported beside it
        raw = softmax(logits)
        metrics["uncalibrated"] = {"logloss": log_loss(y, raw), "accuracy": metrics["overall"]["accuracy"]}
    size = run.size()
    metrics.update(
        model=cfg.model.name,
        storage=lm.storage,
        size_bytes=size.get("nonzero_bytes"),
        model_file=lm.path.name,
    )
    paths = run.report_paths
    with run.lock("tinyasc evaluate"):
        atomic_write_text(paths["output"], format_output_csv([c.filename for c in clips], probs, lm.classes))
        title = f"{cfg.model.name} ({lm.storage}) on the evaluate split of {Path(cfg.data.root).name or cfg.data.root}"
        write_reports(paths, metrics, lm.classes, title)
    return metrics


def _reference_devices(path: Path, header: list[str], rows) -> dict[str, str]:
    if "source_label" in header:
        col = header.index("source_label")
        return {r[0]: r[col] for _, r in rows}
    out = {}
    for _, r in rows:
        try:
            out[r[0]] = parse_filename(r[0]).device
        except FileNameError:
            out[r[0]] = ""
    return out


def score(output_csv: str | Path, reference_csv: str | Path, classes: tuple[str, ...] | None = None) -> dict:
    """Score a DCASE-format output file against ``filename<TAB>scene_label`` [``source_label``]."""
    classes = classes or SCENES
    reference_csv = Path(reference_csv)
    rows = _read_rows(reference_csv, ["filename", "scene_label"])
    header = reference_csv.read_text(encoding="utf-8").splitlines()[0].split("\t")
    truth = {}
    for line, r in rows:
        if r[1] not in classes:
            raise DataError(
                f"{reference_csv}:{line}: unknown scene {r[1]!r}; expected one of {', '.join(classes)}"
            )
        truth[r[0]] = classes.index(r[1])
    devices_of = _reference_devices(reference_csv, header, rows)
    names, probs = read_output_csv(output_csv, classes)
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise DataError(f"{output_csv}: duplicate file {dup!r}")
    missing = sorted(set(truth) - set(names))
    extra = sorted(set(names) - set(truth))
    if missing or extra:
        raise DataError(
            f"{output_csv}: files differ from {reference_csv}: {len(missing)} missing (e.g. {missing[:3]}), "
            f"{len(extra)} not in the reference (e.g. {extra[:3]})"
        )
    y = np.array([truth[n] for n in names])
    devices = [devices_of.get(n, "") for n in names]
    return breakdown(y, probs, devices, classes, _groups_for(devices))
