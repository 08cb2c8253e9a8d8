"""From a DataConfig to arrays a training loop consumes: the index, its splits and cached features."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from tinyasc.config import DataConfig, FrontendConfig
from tinyasc.data.cache import cached_features
from tinyasc.data.index import Clip, ClipIndex, DataError, load_generic, load_tau, validation_split


def load_index(cfg: DataConfig, check_audio: bool = True) -> ClipIndex:
    if not cfg.root:
        raise DataError("data.root is not set; give the dataset folder (data.root=PATH)")
    if cfg.format == "tau":
        return load_tau(cfg.root, check_audio=check_audio)
    if cfg.format == "generic":
        if not cfg.csv:
            raise DataError("data.format=generic needs data.csv (filename<TAB>scene_label [fold] [device])")
        return load_generic(
            cfg.csv,
            cfg.root,
            list(cfg.classes) if cfg.classes else None,
            [str(f) for f in cfg.evaluate_folds] if cfg.evaluate_folds else None,
            check_audio=check_audio,
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

    def rows(self, clips: list[Clip]) -> np.ndarray:
        return np.array([self.row[c.filename] for c in clips], dtype=np.int64)

    def labels(self, clips: list[Clip]) -> np.ndarray:
        return np.array([self.index.label_index(c) for c in clips], dtype=np.int64)


def training_clips(index: ClipIndex, data: DataConfig) -> list[Clip]:
    """The training fold, restricted to ``data.train_devices`` when set."""
    clips = index.split("train")
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


def prepare_splits(data: DataConfig, frontend: FrontendConfig, progress: bool = False) -> Splits:
    index = load_index(data)
    train_all = training_clips(index, data)
    train, val = validation_split(train_all, data.validation_fraction, data.validation_seed)
    needed = cached_clips(index, data)
    feats = cached_features(frontend, [index.path(c) for c in needed], data.cache_dir, data.workers, progress)
    row = {c.filename: i for i, c in enumerate(needed)}
    return Splits(index, train, val, index.split("evaluate"), feats, row)


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
        sel = rows[pos]
        sort = np.argsort(sel)  # memmap reads in file order
        x = np.empty((len(sel),) + features.shape[1:], dtype=np.float32)
        x[sort] = features[sel[sort]]
        yield torch.from_numpy(x).unsqueeze(1), torch.from_numpy(labels[pos]), pos
