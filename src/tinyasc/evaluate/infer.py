"""Prediction on any audio: files, folders or list files, any format soundfile reads, any rate,
channel count and length.

Each file is decoded, downmixed, resampled (polyphase, anti-aliased) to the model's rate and cut into
windows of the model's clip length (default: one window per ``duration`` seconds, hop = window):
windows start at 0, hop, 2*hop, ... while they start before the end; the last one is zero-padded; a
trailing window holding less than half a window of audio is dropped when the file has a full window.
A file shorter than one window gives one zero-padded window. The file's probabilities are the mean
of its windows' probabilities (the baseline sums the softmax outputs of a file's sequences and
divides by their number). Decoding, resampling and the frontend run in parallel worker processes,
a part of at most ``PART_WINDOWS`` windows at a time (so a file of hours needs the memory of minutes);
the model runs batched in the main process.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from math import gcd
from pathlib import Path

import numpy as np
import torch

from tinyasc.artifact import DeviceHeads
from tinyasc.config import FrontendConfig
from tinyasc.data.audio import AudioError, audio_info, resample
from tinyasc.data.tau import FileNameError, parse_filename
from tinyasc.evaluate.predict import LoadedModel
from tinyasc.frontend import LogMel
from tinyasc.procs import worker_pool

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
    heard: bool = False  # a sample that is not zero was read (a file of zeros is refused as silent)


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
            audio = sorted(q for q in p.rglob("*") if q.suffix.lower() in AUDIO_EXTENSIONS)
            found = [q for q in audio if q.is_file()]
            for q in audio:
                if q.is_symlink() and not q.exists():  # dangling, or a loop of links
                    failed.append(
                        FileResult(str(q), error="a broken or looping link (its target does not exist)")
                    )
            if not audio:
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


# Windows per decoding job: a long file is read, resampled and turned into features one part at a
# time, so memory stays bounded whatever the file's length (8 windows of 10 s: 80 seconds of audio).
PART_WINDOWS = 8
_worker = None


def _init(cfg: FrontendConfig, window_s: float, hop_s: float) -> None:
    global _worker
    torch.set_num_threads(1)
    _worker = (cfg, LogMel(cfg), window_s, hop_s)


@dataclass
class Part:
    """Windows ``first .. first + len(starts)`` of file ``index`` (starts in model-rate samples)."""

    index: int
    path: str
    starts: list[int]
    n_out: int  # samples of the whole file at the model's rate
    window: int = 0  # samples of one window at the model's rate
    error: str | None = None
    features: np.ndarray | None = None  # (windows, 1, n_mels, frames)
    nonzero: bool = False
    timing: dict = field(default_factory=dict)


def plan_parts(index: int, path: str, cfg: FrontendConfig, window_s: float, hop_s: float) -> list[Part]:
    """The windows of one file, in parts of at most ``PART_WINDOWS``, from its header alone."""
    try:
        info = audio_info(path)
    except AudioError as e:
        return [Part(index, path, [], 0, error=str(e).split(": ", 1)[-1])]
    if info.frames == 0:
        return [Part(index, path, [], 0, error="empty audio (0 samples)")]
    up, down = _ratio(info.samplerate, cfg.sample_rate)
    n_out = -(-info.frames * up // down)  # resample_poly's output length
    window = int(round(window_s * cfg.sample_rate))
    hop = int(round(hop_s * cfg.sample_rate))
    starts = window_starts(n_out, window, hop)
    return [
        Part(index, path, starts[i : i + PART_WINDOWS], n_out, window)
        for i in range(0, len(starts), PART_WINDOWS)
    ]


def _ratio(sr_in: int, sr_out: int) -> tuple[int, int]:
    g = gcd(sr_in, sr_out)
    return sr_out // g, sr_in // g


def _decode_part(part: Part) -> Part:
    """Worker: read the span of a part's windows, downmix, resample and compute their log-mel.

    The span read is widened by whole resampling blocks (``down`` input samples, ``up`` output samples)
    beyond the resampler's filter, so each window's samples equal those of resampling the whole file.
    """
    import soundfile as sf

    cfg, frontend, _, _ = _worker
    if part.error is not None:
        return part
    t0 = time.perf_counter()
    length = min(part.window, cfg.clip_samples)
    try:
        with sf.SoundFile(part.path) as f:
            sr, frames = f.samplerate, f.frames
            up, down = _ratio(sr, cfg.sample_rate)
            margin = (20 * max(up, down) // up // down + 2) * down  # input samples, whole blocks
            out_a, out_b = part.starts[0], min(part.starts[-1] + length, part.n_out)
            in_a = max(0, (out_a // up) * down - margin)
            in_b = min(frames, -(-out_b // up) * down + margin)
            f.seek(in_a)
            data = f.read(in_b - in_a, dtype="float32", always_2d=True)
    except Exception as e:  # libsndfile's errors
        part.error = f"not readable audio ({e})"
        return part
    if not np.isfinite(data).all():
        part.error = "audio holds NaN or infinite samples"
        return part
    mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    part.nonzero = bool(np.any(mono))
    t1 = time.perf_counter()
    mono = resample(mono, sr, cfg.sample_rate)
    offset = in_a // down * up  # the model-rate index of mono[0]
    t2 = time.perf_counter()
    clips = np.zeros((len(part.starts), cfg.clip_samples), dtype=np.float32)
    for i, s in enumerate(part.starts):
        seg = mono[s - offset : min(s + length, part.n_out) - offset]
        clips[i, : len(seg)] = seg
    with torch.no_grad():
        part.features = frontend(torch.from_numpy(clips)).numpy()
    part.timing = {"decode": t1 - t0, "resample": t2 - t1, "frontend": time.perf_counter() - t2}
    return part


def _add_part(res: FileResult, part: Part, sample_rate: int) -> None:
    """Fold a decoded part into its file's result: its windows (start, end in seconds), timing, error,
    and whether any sample so far was not zero."""
    if res.error is not None:
        return
    if part.error is not None:
        res.error = part.error
        return
    for k, v in part.timing.items():
        res.timing[k] = res.timing.get(k, 0.0) + v
    res.windows += [
        (s / sample_rate, min(s + part.window, part.n_out) / sample_rate, None) for s in part.starts
    ]
    res.heard = res.heard or part.nonzero


def _bounded_map(fn, items, pool, in_flight: int):
    """``map(fn, items)`` in order, with at most ``in_flight`` items submitted ahead of the consumer, so
    decoded parts never pile up in memory while the model catches up."""
    if pool is None:
        yield from map(fn, items)
        return
    pending = []
    items = iter(items)
    for item in items:
        pending.append(pool.submit(fn, item))
        if len(pending) >= in_flight:
            yield pending.pop(0).result()
    for fut in pending:
        yield fut.result()


def predict_files(
    lm: LoadedModel,
    paths: list[Path],
    window_s: float | None = None,
    hop_s: float | None = None,
    workers: int = 2,
    batch_size: int = 32,
    temperature: float = 1.0,
) -> list[FileResult]:
    """Probabilities per file and per window; failures are returned with their reason, never raised.

    Files are cut into parts of ``PART_WINDOWS`` windows that workers decode independently, at most a
    few parts ahead of the model, so memory stays bounded for files of any length."""
    window_s = lm.frontend.duration if window_s is None else window_s
    hop_s = window_s if hop_s is None else hop_s
    if window_s <= 0 or hop_s <= 0:
        raise ValueError(f"--window and --hop must be > 0 seconds (got {window_s}, {hop_s})")
    if window_s > lm.frontend.duration:
        raise ValueError(f"--window {window_s} s exceeds the model's input of {lm.frontend.duration} s")
    args = (lm.frontend, window_s, hop_s)
    results = [FileResult(str(p)) for p in paths]
    parts = (
        part for i, p in enumerate(paths) for part in plan_parts(i, str(p), lm.frontend, window_s, hop_s)
    )
    pool = None
    if workers <= 1:
        _init(*args)
    else:
        pool = worker_pool(workers, _init, args)
    pending: list[tuple[FileResult, Part]] = []
    probs_of: dict[int, list[np.ndarray]] = {i: [] for i in range(len(paths))}
    try:
        for part in _bounded_map(_decode_part, parts, pool, 2 * max(workers, 1)):
            res = results[part.index]
            _add_part(res, part, lm.frontend.sample_rate)
            if res.error is None:
                pending.append((res, part))
            if sum(len(p.starts) for _, p in pending) >= batch_size:
                _run_model(lm, pending, temperature, probs_of)
                pending = []
        _run_model(lm, pending, temperature, probs_of)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    for i, res in enumerate(results):
        if res.error is None and not res.heard:
            res.error = "silent (every sample is zero)"
        if res.error is not None:
            res.windows = []
            continue
        window_probs = probs_of[i]
        res.windows = [(s, e, p) for (s, e, _), p in zip(res.windows, window_probs, strict=True)]
        res.probs = np.mean(window_probs, axis=0)
    return results


def device_of(path: str) -> str:
    """The recording device a TAU file name states ("" for any other name: the shared head)."""
    try:
        return parse_filename(path).device
    except FileNameError:
        return ""


@torch.no_grad()
def _run_model(lm: LoadedModel, batch: list, temperature: float, probs_of: dict) -> None:
    batch = [(res, part) for res, part in batch if res.error is None]
    if not batch:
        return
    t0 = time.perf_counter()
    x = torch.from_numpy(np.concatenate([part.features for _, part in batch]))
    if isinstance(lm.model, DeviceHeads):  # each file with its recording device's head
        devices = [device_of(res.path) for res, part in batch for _ in part.starts]
        logits = torch.empty(len(x), len(lm.classes), dtype=torch.float64)
        for pos in lm.model.by_device(devices):
            idx = torch.from_numpy(pos)
            logits[idx] = lm.model(lm.norm(x[idx])).double() / temperature
    else:
        logits = lm.model(lm.norm(x)).double() / temperature
    probs = torch.softmax(logits, dim=1).numpy()
    share = (time.perf_counter() - t0) / len(batch)
    i = 0
    for res, part in batch:
        k = len(part.starts)
        probs_of[part.index] += list(probs[i : i + k])
        res.timing["model"] = res.timing.get("model", 0.0) + share
        part.features = None
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
