"""``tinyasc teachers``: train an ensemble of teachers and store their mean logits on the training fold.

Each teacher is an ordinary run (any registered model and config, no size limit) in ``OUT/teacher_K``;
an interrupted call resumes the unfinished teacher and skips finished ones. The ensemble's logits are
the mean of the teachers' logits (CP-JKU's ensembles average logits) on every clip of the training fold
(training and validation parts), computed with each teacher's float32 model and its own frontend, and
stored by file name with a record of the teachers, their configs and validation accuracy.
"""

from __future__ import annotations

import datetime
from pathlib import Path

import numpy as np

from tinyasc import artifact
from tinyasc.config import Config, ConfigError, plain
from tinyasc.data.cache import cached_features
from tinyasc.data.dataset import cached_clips, load_index, training_clips
from tinyasc.distill.logits import save_logits
from tinyasc.evaluate.predict import feature_logits
from tinyasc.rundir import RunDir
from tinyasc.train.run import fit


def teacher_logits(run: RunDir, cfg: Config, progress: bool = False) -> tuple[list, tuple, np.ndarray]:
    """(training-fold clips, classes, logits) of one trained run, float32 model."""
    lm = artifact.load_model(run.float_model_path)
    index = load_index(cfg.data)
    clips = training_clips(index, cfg.data)
    cached = cached_clips(index, cfg.data)  # the run's own cache entry: training fold, then evaluate
    paths = [index.path(c) for c in cached]
    feats = cached_features(lm.frontend, paths, cfg.data.cache_dir, cfg.data.workers, progress)
    return clips, lm.classes, feature_logits(lm, feats, np.arange(len(clips)))


def train_teachers(configs: list[Config], out: str | Path, progress: bool = True) -> dict:
    out = Path(out)
    if not configs:
        raise ConfigError("tinyasc teachers: give at least one config")
    roots = {c.data.root for c in configs}
    if len(roots) != 1:
        raise ConfigError(f"teachers must share one dataset (data.root); got {sorted(roots)}")
    members, all_logits, names, labels, classes = [], [], None, None, None
    for k, cfg in enumerate(configs):
        run = RunDir(out / f"teacher_{k}")
        if not run.float_model_path.exists():
            fit(cfg, run.path, resume=run.has_checkpoint, progress=progress)
        clips, cls, logits = teacher_logits(run, cfg, progress)
        files = [c.filename for c in clips]
        if names is None:
            names, classes = files, cls
            labels = np.array([cls.index(c.scene) for c in clips])
        elif files != names or cls != classes:
            raise ConfigError(f"{run.path}: its training fold or classes differ from teacher_0's")
        all_logits.append(logits)
        best = run.metrics()[-1]
        members.append(
            {
                "run_dir": str(run.path),
                "model": cfg.model.name,
                "config_hash": cfg.hash(),
                "config": plain(cfg.to_dict()),
                "best_epoch": best.get("best_epoch"),
                "last_val_accuracy": best.get("val_accuracy"),
            }
        )
    ensemble = np.mean(all_logits, axis=0)
    record = {
        "format": "tinyasc-teachers-1",
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "ensemble": "mean of logits",
        "files": len(names),
        "classes": list(classes),
        "training_fold_accuracy": float((ensemble.argmax(1) == labels).mean()),
        "teachers": members,
    }
    save_logits(out, names, classes, ensemble, record)
    return record
