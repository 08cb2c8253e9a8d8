"""Load one audio file as the model expects it: mono float32 at the model's rate, fixed length."""

from __future__ import annotations

import logging
import os
from math import gcd
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


class AudioError(ValueError):
    """A file that cannot be used as audio; the message names the file and the reason."""


def audio_info(path: str | Path):
    """soundfile's header info of a file that exists, is readable audio and is not truncated."""
    import soundfile as sf

    if not os.access(path, os.R_OK):  # libsndfile would only say "System error."
        reason = "file not found" if not os.path.exists(path) else "permission denied"
        raise AudioError(f"{path}: {reason}")
    try:
        info = sf.info(str(path))
    except Exception as e:  # libsndfile errors are RuntimeError subclasses with varying names
        raise AudioError(f"{path}: not readable audio ({e})") from None
    declared = wav_declared_frames(path)
    if declared is not None and info.frames < declared:  # libsndfile reads what is there, silently
        raise AudioError(
            f"{path}: truncated: its header declares {declared} samples, the file holds {info.frames}"
        )
    return info


def read_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """Decode any format soundfile reads. Returns (samples (T, C) float32 in [-1, 1], sample rate)."""
    import soundfile as sf

    audio_info(path)
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as e:  # libsndfile errors are RuntimeError subclasses with varying names
        raise AudioError(f"{path}: not readable audio ({e})") from None
    return data, sr


def wav_declared_frames(path: str | Path) -> int | None:
    """The sample frames a RIFF/WAVE header declares in its data chunk (None for other formats)."""
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        block_align = None
        for _ in range(64):  # chunks before 'data': fmt, fact, LIST, ...
            chunk = f.read(8)
            if len(chunk) < 8:
                return None
            cid, size = chunk[:4], int.from_bytes(chunk[4:], "little")
            if cid == b"fmt ":
                fmt = f.read(size)
                if len(fmt) < 14:
                    return None
                block_align = int.from_bytes(fmt[12:14], "little")
                f.seek(size % 2, 1)
            elif cid == b"data":
                if not block_align or size == 0xFFFFFFFF:  # unknown or streamed (size left open)
                    return None
                return size // block_align
            else:
                f.seek(size + size % 2, 1)
    return None


def resample(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Polyphase resampling with scipy's Kaiser-windowed anti-aliasing FIR; x: (T,) or (T, C)."""
    if sr_in == sr_out:
        return x
    from scipy.signal import resample_poly

    g = gcd(sr_in, sr_out)
    return resample_poly(x, sr_out // g, sr_in // g, axis=0).astype(np.float32)


def fit_length(x: np.ndarray, n: int) -> np.ndarray:
    """Zero-pad at the end or crop to exactly n samples; x: (T,)."""
    if len(x) >= n:
        return x[:n]
    return np.pad(x, (0, n - len(x)))


def load_clip(path: str | Path, sample_rate: int, n_samples: int | None = None) -> np.ndarray:
    """(T,) float32 mono at ``sample_rate``, padded or cropped to ``n_samples`` when given."""
    data, sr = read_audio(path)
    if data.shape[0] == 0:
        raise AudioError(f"{path}: empty audio (0 samples)")
    mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    mono = resample(mono, sr, sample_rate)
    if not np.isfinite(mono).all():
        raise AudioError(f"{path}: audio holds NaN or infinite samples")
    if not np.any(mono):
        log.warning("%s: silent (every sample is zero); used as it is", path)
    return fit_length(mono, n_samples) if n_samples is not None else mono
