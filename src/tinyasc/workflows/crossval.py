"""``tinyasc crossval CONFIG --out DIR``: one run per held-out fold of a dataset with predefined folds.

For each fold ``k`` (``--folds``, default every fold of the CSV's ``fold`` column) the run
``DIR/fold_k`` trains on the other folds (its validation part chosen by ``data.validation``, by
default one of the remaining folds) and is evaluated on fold ``k`` alone; no run ever sees its
held-out fold before its evaluation. The summary (``crossval.json``, ``crossval.md``) gives each fold's
class-wise accuracy and log loss and their mean and standard deviation over the folds.

Distillation (``--teachers``): for each fold, a teacher ensemble is trained on that fold's training
data alone (``DIR/teachers/fold_k``, as ``tinyasc teachers`` makes one) and the fold's student learns
from its logits, so no teacher ever sees the held-out fold either.

Resumable: a finished fold is read back, an interrupted one continues from its checkpoint. Two
processes may share ``DIR`` on one machine: a fold another process is training is left to it (its run
directory is locked) and read back when that process has finished it.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import time
from pathlib import Path

from tinyasc.config import Config, ConfigError
from tinyasc.data.dataset import load_index
from tinyasc.evaluate.run import evaluate_run
from tinyasc.io import atomic_write_json, atomic_write_text
from tinyasc.rundir import RunDir, RunLockedError
from tinyasc.train.run import fit
from tinyasc.workflows.teachers import train_teachers

WAIT_SECONDS = 600  # how long to wait for a fold another process is training


def dataset_folds(cfg: Config) -> list[str]:
    """The folds of the dataset's ``fold`` column, in order (numeric names as numbers)."""
    if cfg.data.format != "generic":
        raise ConfigError("crossval: needs data.format=generic with a fold column in data.csv")
    index = load_index(cfg.data, check_audio=False)
    folds = sorted({c.fold for c in index.clips if c.fold is not None}, key=lambda f: (len(f), f))
    if len(folds) < 2:
        raise ConfigError(
            f"crossval: {cfg.data.csv} has {len(folds)} fold(s) in its fold column; need two or more"
        )
    return folds


def fold_config(cfg: Config, fold: str) -> Config:
    """The config of the run that holds out ``fold`` (it becomes the evaluate split)."""
    return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, evaluate_folds=(fold,)))


def _finished(run: RunDir) -> bool:
    return bool(run.evaluation()) and run.float_model_path.exists()


def with_teachers(cfg: Config, fold: str, teachers: list[Config], out: Path, progress: bool) -> Config:
    """The student config of ``fold``: the teachers trained with ``fold`` held out, their logits as its
    distillation targets."""
    where = out / "teachers" / f"fold_{fold}"
    train_teachers([fold_config(t, fold) for t in teachers], where, progress=progress)
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, kd_logits=str(where)))


def _train_and_evaluate(cfg: Config, run: RunDir, progress: bool) -> None:
    if not run.float_model_path.exists():
        fit(cfg, run.path, resume=run.has_checkpoint, progress=progress)
    evaluate_run(run.path, progress=progress)


def crossval(
    cfg: Config,
    out: str | Path,
    folds: list[str] | None = None,
    progress: bool = True,
    teachers: list[Config] | None = None,
) -> dict:
    """Train and evaluate one run per held-out fold in ``out``; returns the summary (also written).
    ``teachers``: configs of a teacher ensemble trained per fold for the student to distil."""
    out = Path(out)
    every = dataset_folds(cfg)
    folds = [str(f) for f in (folds or every)]
    unknown = [f for f in folds if f not in every]
    if unknown:
        raise ConfigError(f"crossval --folds: {unknown} not in the dataset's folds {every}")
    if teachers and cfg.train.kd_logits:
        raise ConfigError(
            f"crossval --teachers: the config already names teacher logits (train.kd_logits="
            f"{cfg.train.kd_logits}); teachers made on all folds would have seen the held-out fold"
        )
    for t in teachers or []:
        if (t.data.csv, t.data.root) != (cfg.data.csv, cfg.data.root):
            raise ConfigError(
                f"crossval --teachers: a teacher's dataset ({t.data.csv}) is not the student's ({cfg.data.csv})"
            )
    deferred = []
    for fold in folds:
        run = RunDir(out / f"fold_{fold}")
        if _finished(run):
            continue
        try:
            if progress:
                print(f"crossval: fold {fold} held out ({folds.index(fold) + 1} of {len(folds)})", flush=True)
            student = fold_config(cfg, fold)
            if teachers and not run.float_model_path.exists():
                student = with_teachers(student, fold, teachers, out, progress)
            _train_and_evaluate(student, run, progress)
        except RunLockedError:
            deferred.append(run)  # another process trains this fold
    deadline = time.time() + WAIT_SECONDS
    while deferred:
        run = deferred[0]
        if _finished(run):
            deferred.pop(0)
        elif time.time() > deadline:
            raise ConfigError(
                f"crossval: {run.path} is still being trained by another process; run again later"
            )
        else:
            time.sleep(5)
    rows = []
    for fold in folds:
        m = RunDir(out / f"fold_{fold}").evaluation()
        o = m["overall"]
        rows.append(
            {
                "fold": fold,
                "files": o["files"],
                "accuracy": o["accuracy"],
                "logloss": o["logloss"],
                "accuracy_ci95": o["accuracy_ci95"],
            }
        )
    summary = {
        "config": cfg.hash(),
        "model": cfg.model.name,
        "teachers": [
            {"model": t.model.name, "config": t.hash(), "seed": t.train.seed} for t in teachers or []
        ],
        "folds": rows,
        "accuracy_mean": statistics.fmean(r["accuracy"] for r in rows),
        "accuracy_std": statistics.stdev(r["accuracy"] for r in rows) if len(rows) > 1 else math.nan,
        "logloss_mean": statistics.fmean(r["logloss"] for r in rows),
        "logloss_std": statistics.stdev(r["logloss"] for r in rows) if len(rows) > 1 else math.nan,
    }
    atomic_write_json(out / "crossval.json", summary)
    atomic_write_text(out / "crossval.md", format_summary(summary) + "\n")
    return summary


def format_summary(s: dict) -> str:
    lines = [
        f"Cross-validation of {s['model']} (config {s['config']}), one run per held-out fold",
        "",
        "| held-out fold | files | accuracy (class-wise mean) | log loss |",
        "|---|---|---|---|",
    ]
    for r in s["folds"]:
        lines.append(
            f"| {r['fold']} | {r['files']} | {100 * r['accuracy']:.1f}% ±{100 * r['accuracy_ci95']:.1f} | "
            f"{r['logloss']:.3f} |"
        )
    lines.append(
        f"| **mean ± std over {len(s['folds'])} folds** | | **{100 * s['accuracy_mean']:.1f}% ± "
        f"{100 * s['accuracy_std']:.1f}** | **{s['logloss_mean']:.3f} ± {s['logloss_std']:.3f}** |"
    )
    return "\n".join(lines)
