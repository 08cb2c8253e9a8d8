"""``tinyasc stream MODEL --input FILE|-``: classify a live or piped stream, one line per hop.

Samples arrive in blocks (a file read block by block, optionally paced in real time, raw 16-bit
little-endian PCM on standard input at ``--rate`` and ``--channels``, or a microphone through the
``sounddevice`` package where it and PortAudio are installed); a ring buffer keeps the last
window (the model's clip length unless ``--window``). Every ``--hop`` seconds, once a whole window has
arrived, the window's log-mel is computed and the model predicts. The log-mel is incremental where the
window is the model's clip and the hop a multiple of the frontend's hop (``frontend.SlidingLogMel``: the
frames the last window already had are kept, only the new frames and those at the two padded edges are
computed), else the whole window again; either way a window's features are those of offline prediction
of the same samples, to float rounding. Then one line is written: the window's end time, the label of the smoothed
probabilities and the probabilities themselves. Smoothing is an exponential moving average over hops
(``--smooth`` = the weight of the newest window; 1 = none). The time each hop took and the real-time
factor (processing time over audio time) are measured and printed at the end.

Input at another rate than the model's is resampled block by block (polyphase), which differs from
resampling a whole file only within a few samples of block edges; at the model's rate a stream's
windows equal offline windows (``tests/test_stream.py``).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from tinyasc.artifact import LoadedModel
from tinyasc.data.audio import AudioError, resample
from tinyasc.frontend import LogMel, SlidingLogMel


@dataclass
class StreamStats:
    hops: int = 0
    audio_seconds: float = 0.0
    hop_seconds: list[float] = field(default_factory=list)

    @property
    def real_time_factor(self) -> float:
        return sum(self.hop_seconds) / self.audio_seconds if self.audio_seconds else float("nan")


def file_blocks(path: str | Path, block: int, realtime: bool = False) -> Iterator[tuple[np.ndarray, int]]:
    """Mono float32 blocks of a file as they would arrive (paced at real time with ``realtime``)."""
    import soundfile as sf

    try:
        f = sf.SoundFile(str(path))
    except Exception as e:  # libsndfile's errors
        raise AudioError(f"{path}: not readable audio ({e})") from None
    with f:
        start = time.perf_counter()
        done = 0
        for data in f.blocks(blocksize=block, dtype="float32", always_2d=True):
            if realtime:  # wait until the block would have been recorded
                wait = (done + len(data)) / f.samplerate - (time.perf_counter() - start)
                if wait > 0:
                    time.sleep(wait)
            done += len(data)
            yield data.mean(axis=1), f.samplerate


def pcm_blocks(stream, rate: int, channels: int, block: int) -> Iterator[tuple[np.ndarray, int]]:
    """Mono float32 blocks of raw 16-bit little-endian PCM read from a binary stream (stdin)."""
    frame = 2 * channels
    rest = b""
    while True:
        chunk = stream.read(block * frame)
        if not chunk:
            break
        chunk = rest + chunk
        usable = len(chunk) - len(chunk) % frame
        rest = chunk[usable:]
        x = np.frombuffer(chunk[:usable], dtype="<i2").astype(np.float32) / 32768.0
        yield x.reshape(-1, channels).mean(axis=1), rate


def mic_blocks(
    rate: int, channels: int, block: int, device: str | None = None
) -> Iterator[tuple[np.ndarray, int]]:
    """Mono float32 blocks from a microphone through the ``sounddevice`` package (PortAudio), which
    tinyasc does not install: without it, an AudioError saying what to install or how to pipe instead."""
    try:
        import sounddevice as sd
    except (ImportError, OSError) as e:  # OSError: the package is there but PortAudio is not
        raise AudioError(
            f"--input mic needs the sounddevice package and the PortAudio library ({e}); install them "
            "(pip install sounddevice; on Debian/Ubuntu apt install libportaudio2) or pipe a recorder: "
            "arecord -f S16_LE -r 44100 -c 1 | tinyasc stream MODEL --input -"
        ) from None
    try:
        stream = sd.InputStream(
            samplerate=rate, channels=channels, blocksize=block, dtype="float32", device=device
        )
    except Exception as e:  # PortAudio's errors: no such device, rate not supported
        raise AudioError(f"--input mic: cannot open the microphone ({e})") from None

    def blocks() -> Iterator[tuple[np.ndarray, int]]:  # opened above, so a missing library fails first
        with stream:
            while True:
                data, _overflowed = stream.read(block)
                yield np.asarray(data).mean(axis=1), rate

    return blocks()


def stream_predict(
    lm: LoadedModel,
    blocks: Iterator[tuple[np.ndarray, int]],
    hop_s: float,
    window_s: float | None = None,
    smooth: float = 1.0,
    temperature: float = 1.0,
    out=sys.stdout,
    incremental: bool = True,
) -> tuple[list[tuple[float, np.ndarray, np.ndarray]], StreamStats]:
    """Write a line per hop; returns ``[(end time s, raw probabilities, smoothed)]`` and the timing.
    ``incremental=False`` computes every window's log-mel whole (the benchmark's reference)."""
    fe = lm.frontend
    window_s = fe.duration if window_s is None else window_s
    if not 0 < window_s <= fe.duration or hop_s <= 0:
        raise ValueError(
            f"--window must lie in (0, {fe.duration}] s and --hop be > 0 (got {window_s}, {hop_s})"
        )
    if not 0 < smooth <= 1:
        raise ValueError(f"--smooth {smooth}: the newest window's weight, in (0, 1]")
    window, hop = int(round(window_s * fe.sample_rate)), int(round(hop_s * fe.sample_rate))
    logmel = LogMel(fe)
    sliding = SlidingLogMel(logmel, hop) if incremental and SlidingLogMel.usable(fe, window, hop) else None
    ring = np.zeros(window, dtype=np.float32)
    have, since_hop, total = 0, 0, 0
    stats, results, ema = StreamStats(), [], None
    out.write("\t".join(["end_s", "scene_label", *lm.classes]) + "\n")
    with torch.no_grad():
        for x, rate in blocks:
            if rate != fe.sample_rate:
                x = resample(x, rate, fe.sample_rate)
            pos = 0
            while pos < len(x):
                # fill up to the next hop boundary (or the first whole window) from this block
                need = (window - have) if have < window else (hop - since_hop)
                take = min(need, len(x) - pos)
                ring = np.roll(ring, -take)
                ring[-take:] = x[pos : pos + take]
                pos += take
                total += take
                if have < window:
                    have += take
                    due = have == window
                else:
                    since_hop += take
                    due = since_hop == hop
                if not due:
                    continue
                since_hop = 0
                t0 = time.perf_counter()
                if sliding is not None:  # only the frames this hop changed
                    feats = sliding(torch.from_numpy(ring))
                else:
                    clip = np.zeros(fe.clip_samples, dtype=np.float32)
                    clip[:window] = ring
                    feats = logmel(torch.from_numpy(clip)[None])
                probs = torch.softmax(lm.model(lm.norm(feats)).double() / temperature, dim=1)[0].numpy()
                ema = probs if ema is None else smooth * probs + (1 - smooth) * ema
                stats.hop_seconds.append(time.perf_counter() - t0)
                stats.hops += 1
                end = total / fe.sample_rate
                results.append((end, probs, ema))
                out.write(
                    "\t".join([f"{end:.3f}", lm.classes[int(np.argmax(ema))], *(f"{v:.6f}" for v in ema)])
                    + "\n"
                )
                out.flush()
    stats.audio_seconds = total / fe.sample_rate
    return results, stats
