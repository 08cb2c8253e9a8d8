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
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path

import numpy as np

from tinyasc.config import FrontendConfig, config_hash
from tinyasc.io import atomic_write_json

log = logging.getLogger(__name__)

CACHE_VERSION = 1


def default_cache_dir() -> Path:
    return Path(os.environ.get("TINYASC_CACHE", Path.home() / ".cache" / "tinyasc"))


def cache_key(cfg: FrontendConfig, paths: list[Path]) -> str:
    stats = []
    for p in paths:
        st = p.stat()
        stats.append((str(p), st.st_size, st.st_mtime_ns))
    return config_hash({"v": CACHE_VERSION, "frontend": asdict(cfg), "files": stats})


_worker_frontend = None


def _init_worker(cfg: FrontendConfig) -> None:
    import torch

    from tinyasc.frontend import LogMel

    global _worker_frontend
    torch.set_num_threads(1)
    _worker_frontend = (cfg, LogMel(cfg))


def _features(paths: list[str]) -> np.ndarray:
    import torch

    from tinyasc.data.audio import load_clip

    cfg, frontend = _worker_frontend
    audio = np.stack([load_clip(p, cfg.sample_rate, cfg.clip_samples) for p in paths])
    with torch.no_grad():
        feats = frontend(torch.from_numpy(audio))[:, 0]
    return feats.numpy().astype(np.float16)


def compute_features(
    cfg: FrontendConfig,
    paths: list[Path],
    out: np.ndarray,
    workers: int = 1,
    chunk: int = 16,
    progress: bool = False,
) -> None:
    """Fill ``out`` (N, n_mels, frames) with the log-mel features of ``paths``, in parallel workers."""
    from tqdm import tqdm

    chunks = [[str(p) for p in paths[i : i + chunk]] for i in range(0, len(paths), chunk)]
    bar = tqdm(total=len(paths), desc="features", unit="clip", disable=not progress)
    if workers <= 1:
        _init_worker(cfg)
        results = map(_features, chunks)
        for i, feats in enumerate(results):
            out[i * chunk : i * chunk + len(feats)] = feats
            bar.update(len(feats))
    else:
        with ProcessPoolExecutor(max_workers=workers, initializer=_init_worker, initargs=(cfg,)) as pool:
            for i, feats in enumerate(pool.map(_features, chunks)):
                out[i * chunk : i * chunk + len(feats)] = feats
                bar.update(len(feats))
    bar.close()


def cached_features(
    cfg: FrontendConfig,
    paths: list[Path],
    cache_dir: str | Path | None = None,
    workers: int = 1,
    progress: bool = False,
) -> np.ndarray:
    """Read-only memory map (N, n_mels, frames) float16 of the features of ``paths``, computing if needed."""
    if cfg.frames is None:
        raise ValueError("the feature cache needs a fixed frontend.frames")
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    cache_dir.mkdir(parents=True, exist_ok=True)
    paths = [Path(p).resolve() for p in paths]
    key = cache_key(cfg, paths)
    array, sidecar = cache_dir / f"{key}.npy", cache_dir / f"{key}.json"
    shape = (len(paths), cfg.n_mels, cfg.frames)
    if sidecar.exists() and array.exists():
        meta = json.loads(sidecar.read_text())
        if meta.get("complete") and tuple(meta["shape"]) == shape:
            log.info("feature cache hit %s", array)
            return np.load(array, mmap_mode="r")
    tmp = cache_dir / f".{key}.{os.getpid()}.npy.tmp"
    try:
        mm = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=shape)
        compute_features(cfg, paths, mm, workers=workers, progress=progress)
        mm.flush()
        del mm
        os.replace(tmp, array)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    atomic_write_json(
        sidecar,
        {
            "complete": True,
            "version": CACHE_VERSION,
            "shape": list(shape),
            "dtype": "float16",
            "content": "log-mel features, not normalised",
            "frontend": asdict(cfg),
            "files": [str(p) for p in paths],
        },
    )
    return np.load(array, mmap_mode="r")
