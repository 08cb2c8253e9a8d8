"""From a DataConfig to arrays a training loop consumes: the index, its splits and cached features."""

from __future__ import annotations

import logging
import random
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from tinyasc.config import DataConfig, FrontendConfig
from tinyasc.data.cache import cached_features, default_cache_dir
from tinyasc.data.index import Clip, ClipIndex, DataError, load_generic, load_tau, validation_split
from tinyasc.data.tau2022 import read_subset

log = logging.getLogger(__name__)


def load_index(cfg: DataConfig, check_audio: bool = True) -> ClipIndex:
    if not cfg.root:
        raise DataError("data.root is not set; give the dataset folder (data.root=PATH)")
    memo = Path(cfg.cache_dir) if cfg.cache_dir else default_cache_dir()  # audio checks passed before
    if cfg.format == "tau":
        return load_tau(cfg.root, check_audio=check_audio, memo_dir=memo)
    if cfg.format == "generic":
        if not cfg.csv:
            raise DataError("data.format=generic needs data.csv (filename<TAB>scene_label [fold] [device])")
        return load_generic(
            cfg.csv,
            cfg.root,
            list(cfg.classes) if cfg.classes else None,
            [str(f) for f in cfg.evaluate_folds] if cfg.evaluate_folds else None,
            check_audio=check_audio,
            memo_dir=memo,
        )
    raise DataError(f"data.format: {cfg.format!r}; expected 'tau' or 'generic'")


@dataclass
class Splits:
    """Training, validation and evaluation clips with rows into one feature array."""

    index: ClipIndex
    train: list[Clip]
    val: list[Clip]
    evaluate: list[Clip]
    features: np.ndarray  # (N, n_mels, frames) float16 memmap over index.clips
    row: dict[str, int]
    validation: dict = field(default_factory=dict)  # how the validation part was chosen, with counts

    def rows(self, clips: list[Clip]) -> np.ndarray:
        return np.array([self.row[c.filename] for c in clips], dtype=np.int64)

    def labels(self, clips: list[Clip]) -> np.ndarray:
        return np.array([self.index.label_index(c) for c in clips], dtype=np.int64)


def training_clips(index: ClipIndex, data: DataConfig) -> list[Clip]:
    """The training fold, restricted to ``data.subset``'s files and ``data.train_devices`` when set."""
    clips = index.split("train")
    if data.subset is not None:
        keep = read_subset(index.root, data.subset)
        clips = [c for c in clips if c.filename in keep]
        if not clips:
            raise DataError(f"data.subset={data.subset}: none of its files is in the training split")
    if data.train_devices:
        clips = [c for c in clips if c.device in set(data.train_devices)]
        if not clips:
            raise DataError(
                f"data.train_devices={list(data.train_devices)}: no training clips on these devices"
            )
    return clips


def cached_clips(index: ClipIndex, data: DataConfig) -> list[Clip]:
    """The clips one feature-cache entry holds for a run: its training fold, then the evaluate split.

    Training and evaluation of a run share this list, so evaluation reads the features training cached.
    """
    return training_clips(index, data) + index.split("evaluate")


def fraction_split(clips: list[Clip], fraction: float, seed: int) -> tuple[list[Clip], list[Clip]]:
    """A seeded share of each class's recordings for validation (files, or the 10-s files the 2022
    layout's snippets were cut from, whole: not locations)."""
    rng = random.Random(seed)
    by_class: dict = defaultdict(set)
    for c in clips:
        by_class[c.scene].add(c.recording)
    val: set[str] = set()
    for scene in sorted(by_class, key=str):
        names = sorted(by_class[scene])
        rng.shuffle(names)
        val.update(names[: int(round(fraction * len(names)))])
    return [c for c in clips if c.recording not in val], [c for c in clips if c.recording in val]


def fold_split(clips: list[Clip], fold: str | None) -> tuple[list[Clip], list[Clip], str]:
    """One predefined fold of the training data for validation: ``fold``, or the last one."""
    folds = sorted({c.fold for c in clips if c.fold is not None}, key=lambda f: (len(f), f))
    if not folds:
        raise DataError("data.validation=fold: the clips have no fold (add a fold column to the CSV)")
    chosen = str(fold) if fold is not None else folds[-1]
    if chosen not in folds:
        raise DataError(
            f"data.validation_fold={chosen!r}: not a training fold; the training folds are {folds}"
        )
    return [c for c in clips if c.fold != chosen], [c for c in clips if c.fold == chosen], chosen


def choose_validation(clips: list[Clip], data: DataConfig) -> tuple[list[Clip], list[Clip], dict]:
    """``(train, validation, record)`` of the training clips as ``data.validation`` asks.

    Refuses a split that leaves less than ``data.min_train_share`` of the clips, or no clip of a class,
    for training; ``auto`` first falls back from locations to a file fraction (a small corpus has too
    few locations per city for the DCASE rule) and says so in the record and the log.
    """
    how = data.validation
    note = ""
    if how == "auto":  # a fold validates only where the training part has more than one
        folds = {c.fold for c in clips if c.fold is not None}
        how = "location" if any(c.location for c in clips) else "fold" if len(folds) > 1 else "fraction"
    fold = None
    if how == "location":
        train, val = validation_split(clips, data.validation_fraction, data.validation_seed)
        if data.validation == "auto" and len(train) < data.min_train_share * len(clips):
            note = (
                f"the location split would train on {len(train)} of {len(clips)} clips (too few locations); "
                f"a {data.validation_fraction:g} share of each class's files validates instead"
            )
            log.warning("%s", note)
            how = "fraction"
            train, val = fraction_split(clips, data.validation_fraction, data.validation_seed)
    elif how == "fold":
        train, val, fold = fold_split(clips, data.validation_fold)
    elif how == "fraction":
        train, val = fraction_split(clips, data.validation_fraction, data.validation_seed)
    else:
        train, val = list(clips), []
    record = {"method": how, "train": len(train), "validation": len(val), "of": len(clips)}
    if fold is not None:
        record["fold"] = fold
    if note:
        record["note"] = note
    if clips and len(train) < data.min_train_share * len(clips):
        raise DataError(
            f"data.validation={how}: {len(train)} of {len(clips)} training clips ({len(train) / len(clips):.0%}) "
            f"would train, below data.min_train_share={data.min_train_share:g}; choose data.validation="
            "fraction or none, or a smaller data.validation_fraction"
        )
    missing = sorted(set(Counter(c.scene for c in clips)) - {c.scene for c in train}, key=str)
    if missing:
        raise DataError(f"data.validation={how}: no training clip left of class(es) {missing}")
    return train, val, record


def prepare_splits(data: DataConfig, frontend: FrontendConfig, progress: bool = False) -> Splits:
    index = load_index(data)
    train_all = training_clips(index, data)
    train, val, record = choose_validation(train_all, data)
    needed = cached_clips(index, data)
    feats = cached_features(frontend, [index.path(c) for c in needed], data.cache_dir, data.workers, progress)
    row = {c.filename: i for i, c in enumerate(needed)}
    return Splits(index, train, val, index.split("evaluate"), feats, row, record)


def batches(
    features: np.ndarray,
    rows: np.ndarray,
    labels: np.ndarray,
    batch_size: int,
    shuffle: bool = False,
    generator: torch.Generator | None = None,
):
    """Yield (x (B, 1, n_mels, frames) float32, y (B,) int64, positions) from the feature memmap."""
    order = torch.randperm(len(rows), generator=generator).numpy() if shuffle else np.arange(len(rows))
    for i in range(0, len(order), batch_size):
        pos = order[i : i + batch_size]
        yield read_batch(features, rows[pos]), torch.from_numpy(labels[pos]), pos


def read_batch(features: np.ndarray, sel: np.ndarray) -> torch.Tensor:
    """Rows ``sel`` of the cache as one float32 batch (B, 1, ...), read in file order."""
    sort = np.argsort(sel)  # memmap reads in file order
    x = np.empty((len(sel),) + features.shape[1:], dtype=np.float32)
    x[sort] = features[sel[sort]]
    return torch.from_numpy(x).unsqueeze(1)
