"""Feature cache: log-mel features of a file list, computed once, stored as a float16 memory map.

A cache entry is ``<dir>/<key>.npy`` (N, n_mels, frames) plus ``<key>.json`` describing what it holds.
The key hashes the frontend config and, per file, its name, size and modification time, so changed
settings or changed audio never read a stale cache. The array is written to a temporary name and
renamed, then the sidecar is written atomically; an entry without its sidecar is never read.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from tinyasc.config import FrontendConfig, config_hash
from tinyasc.data.audio import load_clip
from tinyasc.frontend import LogMel
from tinyasc.io import atomic_write_json
from tinyasc.procs import worker_pool

log = logging.getLogger(__name__)

CACHE_VERSION = 1


def default_cache_dir() -> Path:
    return Path(os.environ.get("TINYASC_CACHE", Path.home() / ".cache" / "tinyasc"))


def file_stats(paths: list[Path]) -> list[tuple[str, int, int]]:
    """(name, size, mtime) per file: what a cache key must change with."""
    out = []
    for p in paths:
        st = p.stat()
        out.append((str(p), st.st_size, st.st_mtime_ns))
    return out


def cache_key(cfg: FrontendConfig, paths: list[Path]) -> str:
    return config_hash({"v": CACHE_VERSION, "frontend": asdict(cfg), "files": file_stats(paths)})


_worker_frontend = None


def _init_worker(cfg: FrontendConfig) -> None:
    global _worker_frontend
    torch.set_num_threads(1)
    _worker_frontend = (cfg, LogMel(cfg))


# Clips per log-mel call in a worker. One clip's spectrogram (about 4 MB for 10 s) keeps the memory a
# worker touches small; with numpy's BLAS kept to one thread (engine.passive_waits), batches of 1, 4
# and 16 cost the same per clip (benchmarks/frontend_speed.py, README).
FRONTEND_BATCH = 1


def _features(paths: list[str]) -> np.ndarray:
    cfg, frontend = _worker_frontend
    audio = np.stack([load_clip(p, cfg.sample_rate, cfg.clip_samples) for p in paths])
    with torch.no_grad():
        feats = [
            frontend(torch.from_numpy(audio[i : i + FRONTEND_BATCH]))[:, 0]
            for i in range(0, len(audio), FRONTEND_BATCH)
        ]
    return torch.cat(feats).numpy().astype(np.float16)


def compute_features(
    cfg: FrontendConfig,
    paths: list[Path],
    out: np.ndarray,
    workers: int = 1,
    chunk: int = 16,
    progress: bool = False,
) -> None:
    """Fill ``out`` (N, n_mels, frames) with the log-mel features of ``paths``, in parallel workers."""
    if workers <= 1:
        _init_worker(cfg)
    jobs = [[str(p) for p in paths[i : i + chunk]] for i in range(0, len(paths), chunk)]
    _fill_in_chunks(out, jobs, _features, chunk, workers, "features", progress, _init_worker, (cfg,))


def _fill_in_chunks(out, jobs, fn, chunk, workers, desc, progress, initializer=None, initargs=()) -> None:
    """``out[k * chunk : ...] = fn(jobs[k])`` for every job, in worker processes when ``workers > 1``."""
    from tqdm import tqdm

    bar = tqdm(total=len(out), desc=desc, unit="clip", disable=not progress)
    if workers <= 1:
        results = map(fn, jobs)
        for i, part in enumerate(results):
            out[i * chunk : i * chunk + len(part)] = part
            bar.update(len(part))
    else:
        with worker_pool(workers, initializer, initargs) as pool:
            for i, part in enumerate(pool.map(fn, jobs)):
                out[i * chunk : i * chunk + len(part)] = part
                bar.update(len(part))
    bar.close()


def cached_features(
    cfg: FrontendConfig,
    paths: list[Path],
    cache_dir: str | Path | None = None,
    workers: int = 1,
    progress: bool = False,
) -> np.ndarray:
    """Read-only memory map (N, n_mels, frames) float16 of the features of ``paths``, computing if needed."""
    paths = [Path(p).resolve() for p in paths]
    return _cached_array(
        cache_key(cfg, paths),
        (len(paths), cfg.n_mels, cfg.n_frames),
        lambda out: compute_features(cfg, paths, out, workers=workers, progress=progress),
        {
            "content": "log-mel features, not normalised",
            "frontend": asdict(cfg),
            "files": [str(p) for p in paths],
        },
        cache_dir,
    )


def _waveforms(args: tuple[list[str], int, int]) -> np.ndarray:
    paths, sample_rate, n_samples = args
    return np.stack([load_clip(p, sample_rate, n_samples) for p in paths]).astype(np.float16)


def cached_waveforms(
    sample_rate: int,
    n_samples: int,
    paths: list[Path],
    cache_dir: str | Path | None = None,
    workers: int = 1,
    progress: bool = False,
    chunk: int = 16,
) -> np.ndarray:
    """Read-only memory map (N, n_samples) float16 of mono clips at ``sample_rate`` (the waveform path of
    training with waveform augmentation); same keying, atomic writes and sidecar as the feature cache."""
    paths = [Path(p).resolve() for p in paths]
    key = "wave-" + config_hash(
        {"v": CACHE_VERSION, "rate": sample_rate, "samples": n_samples, "files": file_stats(paths)}
    )
    jobs = [
        ([str(p) for p in paths[i : i + chunk]], sample_rate, n_samples) for i in range(0, len(paths), chunk)
    ]

    def fill(out: np.ndarray) -> None:
        _fill_in_chunks(out, jobs, _waveforms, chunk, workers, "waveforms", progress)

    meta = {"content": "mono waveforms", "sample_rate": sample_rate, "files": [str(p) for p in paths]}
    return _cached_array(key, (len(paths), n_samples), fill, meta, cache_dir)


def _remove_stale(cache_dir: Path, key: str) -> None:
    """Delete the temporary files of ``key`` left by processes that no longer run (a kill -9)."""
    for tmp in cache_dir.glob(f".{key}.*.npy.tmp"):
        try:
            pid = int(tmp.name.split(".")[-3])
            os.kill(pid, 0)  # still running: its file is in use
        except ProcessLookupError:
            tmp.unlink(missing_ok=True)
            log.info("removed %s, left by an interrupted process", tmp)
        except (ValueError, PermissionError):
            continue


def _cached_array(key: str, shape: tuple, fill, meta: dict, cache_dir: str | Path | None) -> np.ndarray:
    """The float16 memmap ``<key>.npy`` of ``shape``, filled by ``fill(out)`` when not complete yet."""
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    cache_dir.mkdir(parents=True, exist_ok=True)
    array, sidecar = cache_dir / f"{key}.npy", cache_dir / f"{key}.json"
    if sidecar.exists() and array.exists():
        old = json.loads(sidecar.read_text())
        if old.get("complete") and tuple(old["shape"]) == tuple(shape):
            log.info("cache hit %s", array)
            return np.load(array, mmap_mode="r")
    _remove_stale(cache_dir, key)
    tmp = cache_dir / f".{key}.{os.getpid()}.npy.tmp"
    try:
        mm = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=shape)
        # Reserve every block now: a memory map over a sparse file that the disk cannot hold kills the
        # process with SIGBUS in the middle of filling; reserved, a full disk is an OSError up front.
        with open(tmp, "r+b") as f:
            os.posix_fallocate(f.fileno(), 0, os.path.getsize(tmp))
        fill(mm)
        mm.flush()
        del mm
        os.replace(tmp, array)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    atomic_write_json(
        sidecar,
        {"complete": True, "version": CACHE_VERSION, "shape": list(shape), "dtype": "float16", **meta},
    )
    return np.load(array, mmap_mode="r")
