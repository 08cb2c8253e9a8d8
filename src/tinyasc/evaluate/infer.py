"""Prediction on any audio: files, folders or list files, any format soundfile reads, any rate,
channel count and length.

Each file is decoded, downmixed, resampled (polyphase, anti-aliased) to the model's rate and cut into
windows of the model's clip length (default: one window per ``duration`` seconds, hop = window):
windows start at 0, hop, 2*hop, ... while they start before the end; the last one is zero-padded; a
trailing window holding less than half a window of audio is dropped when the file has a full window.
A file shorter than one window gives one zero-padded window. The file's probabilities are the mean
of its windows' probabilities (the baseline sums the softmax outputs of a file's sequences and
divides by their number). Decoding, resampling and the frontend run in parallel worker processes;
the model runs batched in the main process.
"""

from __future__ import annotations

import json
import logging
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from tinyasc.config import FrontendConfig
from tinyasc.data.audio import AudioError, read_audio, resample
from tinyasc.evaluate.predict import LoadedModel
from tinyasc.frontend import LogMel

log = logging.getLogger(__name__)

AUDIO_EXTENSIONS = {
    ".wav",
    ".flac",
    ".ogg",
    ".oga",
    ".opus",
    ".mp3",
    ".aif",
    ".aiff",
    ".au",
    ".caf",
    ".w64",
    ".rf64",
}
LIST_EXTENSIONS = {".txt", ".lst"}


@dataclass
class FileResult:
    path: str
    probs: np.ndarray | None = None  # (C,) mean over windows
    windows: list[tuple[float, float, np.ndarray]] = field(default_factory=list)  # (start s, end s, probs)
    error: str | None = None
    timing: dict = field(default_factory=dict)


def collect_inputs(inputs: list[str]) -> tuple[list[Path], list[FileResult]]:
    """Expand files, folders (recursively, audio extensions only) and list files (.txt/.lst).

    Returns (paths to predict, results already failed: missing paths, unsupported extensions). A file
    reached twice (given twice, or in a folder and a list) is predicted once, where it first appears.
    """
    paths, failed = _collect(inputs)
    seen: set[Path] = set()
    unique = []
    for p in paths:
        key = p.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(p)
    return unique, failed


def _collect(inputs: list[str]) -> tuple[list[Path], list[FileResult]]:
    paths: list[Path] = []
    failed: list[FileResult] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted(q for q in p.rglob("*") if q.is_file() and q.suffix.lower() in AUDIO_EXTENSIONS)
            if not found:
                failed.append(FileResult(str(p), error="folder holds no audio files"))
            paths += found
        elif p.suffix.lower() in LIST_EXTENSIONS and p.is_file():
            lines = [ln.strip() for ln in p.read_text(encoding="utf-8").splitlines()]
            sub = [
                str(p.parent / ln) if not Path(ln).is_absolute() else ln
                for ln in lines
                if ln and not ln.startswith("#")
            ]
            more, more_failed = _collect(sub)
            paths += more
            failed += more_failed
        elif not p.exists():
            failed.append(FileResult(str(p), error="file not found"))
        elif p.suffix.lower() not in AUDIO_EXTENSIONS:
            failed.append(
                FileResult(
                    str(p),
                    error=f"unsupported extension {p.suffix!r}; expected one of {sorted(AUDIO_EXTENSIONS)}",
                )
            )
        else:
            paths.append(p)
    return paths, failed


def window_starts(n_samples: int, window: int, hop: int) -> list[int]:
    """Window start samples for a signal of n_samples (see the module docstring for the rule)."""
    if n_samples <= window:
        return [0]
    starts = list(range(0, n_samples, hop))
    while len(starts) > 1 and n_samples - starts[-1] < window / 2:
        starts.pop()
    return starts


_worker = None


def _init(cfg: FrontendConfig, window_s: float, hop_s: float) -> None:
    global _worker
    torch.set_num_threads(1)
    _worker = (cfg, LogMel(cfg), window_s, hop_s)


def _decode(path: str) -> FileResult:
    """Worker: decode, check, resample, window and compute log-mel features of one file."""
    cfg, frontend, window_s, hop_s = _worker
    t0 = time.perf_counter()
    try:
        data, sr = read_audio(path)
        if data.shape[0] == 0:
            raise AudioError(f"{path}: empty audio (0 samples)")
        if not np.isfinite(data).all():
            raise AudioError(f"{path}: audio holds NaN or infinite samples")
        mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
        if not np.any(mono):
            raise AudioError(f"{path}: silent (every sample is zero)")
        t1 = time.perf_counter()
        mono = resample(mono, sr, cfg.sample_rate)
        t2 = time.perf_counter()
        window = int(round(window_s * cfg.sample_rate))
        hop = int(round(hop_s * cfg.sample_rate))
        starts = window_starts(len(mono), window, hop)
        clips = np.zeros((len(starts), cfg.clip_samples), dtype=np.float32)
        for i, s in enumerate(starts):
            seg = mono[s : s + min(window, cfg.clip_samples)]
            clips[i, : len(seg)] = seg
        with torch.no_grad():
            feats = frontend(torch.from_numpy(clips)).numpy()
        t3 = time.perf_counter()
    except AudioError as e:
        return FileResult(path, error=str(e).split(": ", 1)[-1])
    res = FileResult(path, timing={"decode": t1 - t0, "resample": t2 - t1, "frontend": t3 - t2})
    res.windows = [(s / cfg.sample_rate, min(s + window, len(mono)) / cfg.sample_rate, None) for s in starts]
    res.features = feats  # type: ignore[attr-defined]
    return res


def predict_files(
    lm: LoadedModel,
    paths: list[Path],
    window_s: float | None = None,
    hop_s: float | None = None,
    workers: int = 2,
    batch_size: int = 32,
    temperature: float = 1.0,
) -> list[FileResult]:
    """Probabilities per file and per window; failures are returned with their reason, never raised."""
    window_s = lm.frontend.duration if window_s is None else window_s
    hop_s = window_s if hop_s is None else hop_s
    if window_s <= 0 or hop_s <= 0:
        raise ValueError(f"--window and --hop must be > 0 seconds (got {window_s}, {hop_s})")
    if window_s > lm.frontend.duration:
        raise ValueError(f"--window {window_s} s exceeds the model's input of {lm.frontend.duration} s")
    args = (lm.frontend, window_s, hop_s)
    names = [str(p) for p in paths]
    if workers <= 1:
        _init(*args)
        decoded = map(_decode, names)
        pool = None
    else:
        pool = ProcessPoolExecutor(max_workers=workers, initializer=_init, initargs=args)
        decoded = pool.map(_decode, names, chunksize=4)
    results: list[FileResult] = []
    pending: list[FileResult] = []
    try:
        for res in decoded:
            results.append(res)
            if res.error is None:
                pending.append(res)
            if sum(len(r.windows) for r in pending) >= batch_size:
                _run_model(lm, pending, temperature)
                pending = []
        _run_model(lm, pending, temperature)
    finally:
        if pool is not None:
            pool.shutdown()
    return results


@torch.no_grad()
def _run_model(lm: LoadedModel, batch: list[FileResult], temperature: float) -> None:
    if not batch:
        return
    t0 = time.perf_counter()
    x = torch.from_numpy(np.concatenate([r.features for r in batch]))  # type: ignore[attr-defined]
    logits = lm.model(lm.norm(x)).double() / temperature
    probs = torch.softmax(logits, dim=1).numpy()
    share = (time.perf_counter() - t0) / len(batch)
    i = 0
    for r in batch:
        k = len(r.windows)
        r.windows = [(s, e, probs[i + j]) for j, (s, e, _) in enumerate(r.windows)]
        r.probs = probs[i : i + k].mean(axis=0)
        r.timing["model"] = share
        del r.features  # type: ignore[attr-defined]
        i += k


def format_csv(results: list[FileResult], classes: tuple[str, ...], per_window: bool = False) -> str:
    """DCASE columns (filename, scene_label, classes) plus ``error``; failed files have only the error.

    With ``per_window``, each window follows its file as ``NAME#t=START,END`` (W3C media fragment).
    """
    lines = ["\t".join(["filename", "scene_label", *classes, "error"])]
    for r in results:
        if r.error is not None:
            lines.append("\t".join([r.path, "", *([""] * len(classes)), r.error]))
            continue
        lines.append(
            "\t".join([r.path, classes[int(np.argmax(r.probs))], *(f"{v:.8f}" for v in r.probs), ""])
        )
        if per_window:
            for s, e, p in r.windows:
                name = f"{r.path}#t={s:.3f},{e:.3f}"
                lines.append("\t".join([name, classes[int(np.argmax(p))], *(f"{v:.8f}" for v in p), ""]))
    return "\n".join(lines) + "\n"


def format_jsonl(results: list[FileResult], classes: tuple[str, ...], per_window: bool = False) -> str:
    out = []
    for r in results:
        if r.error is not None:
            out.append(json.dumps({"filename": r.path, "error": r.error}))
            continue
        obj = {
            "filename": r.path,
            "scene_label": classes[int(np.argmax(r.probs))],
            "probabilities": {c: round(float(v), 8) for c, v in zip(classes, r.probs, strict=True)},
            "windows": len(r.windows),
        }
        if per_window:
            obj["window_probabilities"] = [
                {"start": round(s, 3), "end": round(e, 3), "probabilities": [round(float(v), 8) for v in p]}
                for s, e, p in r.windows
            ]
        out.append(json.dumps(obj))
    return "\n".join(out) + ("\n" if out else "")
