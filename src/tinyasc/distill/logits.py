"""Teacher logits stored by file name: ``logits.npz`` (filenames, classes, logits) + ``teachers.json``.

The arrays are plain numpy (read with ``allow_pickle=False``: loading never runs code). A student joins
the stored logits to its training clips by file name; a clip without logits, or logits of a file that is
not a training clip, is an error that names the files.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np

from tinyasc.config import ConfigError
from tinyasc.io import atomic_write_bytes, atomic_write_json

LOGITS_FILE = "logits.npz"
RECORD_FILE = "teachers.json"


def save_logits(
    out: Path, filenames: list[str], classes: tuple[str, ...], logits: np.ndarray, record: dict
) -> None:
    if logits.shape != (len(filenames), len(classes)):
        raise ValueError(
            f"logits of shape {logits.shape} for {len(filenames)} files and {len(classes)} classes"
        )
    buf = io.BytesIO()
    np.savez(
        buf,
        filenames=np.array(filenames, dtype=str),
        classes=np.array(classes, dtype=str),
        logits=logits.astype(np.float32),
    )
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / LOGITS_FILE, buf.getvalue())
    atomic_write_json(out / RECORD_FILE, record)


def load_logits(path: str | Path) -> tuple[list[str], tuple[str, ...], np.ndarray]:
    """(filenames, classes, logits) from a teachers directory or a ``logits.npz`` file."""
    path = Path(path)
    if path.is_dir():
        path = path / LOGITS_FILE
    try:
        with np.load(path, allow_pickle=False) as z:
            names, classes, logits = list(z["filenames"]), tuple(z["classes"]), z["logits"]
    except FileNotFoundError:
        raise ConfigError(f"{path}: teacher logits not found (make them with `tinyasc teachers`)") from None
    except (KeyError, ValueError, OSError) as e:
        raise ConfigError(
            f"{path}: not a teacher logits file (expected filenames, classes, logits: {e})"
        ) from None
    if logits.ndim != 2 or logits.shape != (len(names), len(classes)):
        raise ConfigError(
            f"{path}: logits of shape {logits.shape} for {len(names)} files, {len(classes)} classes"
        )
    return [str(n) for n in names], tuple(str(c) for c in classes), logits


def join_logits(path: str | Path, filenames: list[str], classes: tuple[str, ...]) -> np.ndarray:
    """The stored logits in the order of ``filenames`` (the training fold); every file exactly once."""
    names, stored_classes, logits = load_logits(path)
    if tuple(stored_classes) != tuple(classes):
        raise ConfigError(
            f"{path}: teacher classes {list(stored_classes)} differ from the data's {list(classes)}"
        )
    where = {n: i for i, n in enumerate(names)}
    if len(where) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise ConfigError(f"{path}: {len(dup)} files stored twice, e.g. {', '.join(dup[:5])}")
    missing = [f for f in filenames if f not in where]
    extra = sorted(set(names) - set(filenames))
    if missing:
        raise ConfigError(
            f"{path}: no teacher logits for {len(missing)} of {len(filenames)} training clips, e.g. "
            f"{', '.join(missing[:5])} (were the teachers made on this dataset and training fold?)"
        )
    if extra:
        raise ConfigError(
            f"{path}: logits of {len(extra)} files that are not training clips of this dataset, e.g. "
            f"{', '.join(extra[:5])}"
        )
    return logits[[where[f] for f in filenames]]


def describe(path: str | Path) -> dict:
    p = Path(path)
    rec = (p if p.is_dir() else p.parent) / RECORD_FILE
    return json.loads(rec.read_text()) if rec.exists() else {}
