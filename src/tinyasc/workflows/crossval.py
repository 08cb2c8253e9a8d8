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

``--jobs N`` trains N folds at once in worker processes, each with the cores divided among them
(``train.threads`` = cores // N, one cache worker): small models on small data use a second core
poorly, so two one-thread runs side by side finish about twice the folds of one two-thread run
(README, real recordings). The runs are the same runs as one at a time, but for the thread count.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import time
from concurrent.futures import as_completed
from pathlib import Path

from tinyasc import engine
from tinyasc.config import Config, ConfigError
from tinyasc.data.dataset import load_index
from tinyasc.evaluate.run import evaluate_run
from tinyasc.io import atomic_write_json, atomic_write_text
from tinyasc.procs import worker_pool
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


def _fold(cfg: Config, fold: str, out: Path, teachers: list[Config] | None, progress: bool) -> None:
    """Train (with its teachers, if any) and evaluate the run that holds out ``fold``."""
    run = RunDir(out / f"fold_{fold}")
    student = fold_config(cfg, fold)
    if teachers and not run.float_model_path.exists():
        student = with_teachers(student, fold, teachers, out, progress)
    _train_and_evaluate(student, run, progress)


def _fold_in_worker(cfg: Config, fold: str, out: Path, teachers: list[Config] | None, threads: int) -> str:
    """``_fold`` in a worker process of ``--jobs``, with its share of the cores."""
    engine.tune_allocator()  # per process: a spawned worker starts with glibc's defaults

    def share(c: Config) -> Config:
        return dataclasses.replace(
            c,
            train=dataclasses.replace(c.train, threads=c.train.threads or threads),
            data=dataclasses.replace(c.data, workers=1),
        )

    _fold(share(cfg), fold, out, [share(t) for t in teachers or []], progress=False)
    return fold


def crossval(
    cfg: Config,
    out: str | Path,
    folds: list[str] | None = None,
    progress: bool = True,
    teachers: list[Config] | None = None,
    jobs: int = 1,
) -> dict:
    """Train and evaluate one run per held-out fold in ``out``; returns the summary (also written).
    ``teachers``: configs of a teacher ensemble trained per fold for the student to distil; ``jobs``:
    folds trained at once in worker processes."""
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
    todo = [f for f in folds if not _finished(RunDir(out / f"fold_{f}"))]
    if jobs > 1 and len(todo) > 1:
        deferred = _parallel_folds(cfg, todo, out, teachers, jobs, progress)
        todo = []
    for fold in todo:
        try:
            if progress:
                print(f"crossval: fold {fold} held out ({folds.index(fold) + 1} of {len(folds)})", flush=True)
            _fold(cfg, fold, out, teachers, progress)
        except RunLockedError:
            deferred.append(RunDir(out / f"fold_{fold}"))  # another process trains this fold
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


def _parallel_folds(
    cfg: Config, todo: list[str], out: Path, teachers: list[Config] | None, jobs: int, progress: bool
) -> list[RunDir]:
    """Train ``todo`` in ``jobs`` worker processes; returns the folds another process holds."""
    jobs = min(jobs, len(todo))
    threads = max(1, engine.cores() // jobs)
    if progress:
        print(
            f"crossval: {len(todo)} folds, {jobs} at a time in worker processes ({threads} torch thread(s) each)",
            flush=True,
        )
    deferred = []
    out.mkdir(parents=True, exist_ok=True)
    with worker_pool(jobs, start="spawn") as pool:
        running = {pool.submit(_fold_in_worker, cfg, f, out, teachers, threads): f for f in todo}
        for done in as_completed(running):
            fold = running[done]
            try:
                done.result()
            except RunLockedError:
                deferred.append(RunDir(out / f"fold_{fold}"))
                continue
            if progress:
                o = RunDir(out / f"fold_{fold}").evaluation()["overall"]
                print(
                    f"crossval: fold {fold} done: accuracy {100 * o['accuracy']:.1f}%, log loss {o['logloss']:.3f}",
                    flush=True,
                )
    return deferred


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
