"""The feature cache's frontend against librosa computing the same features, per clip, one thread.

    python benchmarks/frontend_speed.py [--rounds 10] [--corpus ROOT --files 320]

For the baseline's frontend (40 x 500 per 10 s) and the zoo's 256-band one (256 x 431): tinyasc's
``LogMel`` on batches of 1, 4 and 16 clips (per clip: the batch's time over its size) and librosa
(``librosa.stft`` magnitude, the same mel filterbank, ``log``) on one clip, interleaved round by round
(A B C D A B C D) so that the machine's load falls on all alike; the decode of a 10-s 24-bit WAV with
soundfile for scale. Prints median wall and process CPU milliseconds per clip and the ratio to librosa,
with the load. The frontend as it was before (``DenseLogMel``: torch.stft's centring, the complex
``abs()`` and the dense filterbank product) is timed at batch 1 in the same rounds. ``tests/test_frontend.py`` checks that tinyasc and librosa
agree (within 2e-4 on 10-s clips).

With ``--corpus`` (a TAU-layout root), also fills the feature cache cold for ``--files`` of its clips
with two workers, the log-mel computed clip by clip (``data.cache.FRONTEND_BATCH = 1``, the default)
and 16 clips at a time, A B A B into fresh cache folders, and checks that both give the same features.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import time

from tinyasc import engine

engine.prepare_process()  # as every tinyasc command: before numpy loads (one BLAS thread, no spinning)

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402
import torch  # noqa: E402

from timing import timed  # noqa: E402
from tinyasc.config import FrontendConfig  # noqa: E402
from tinyasc.frontend import LogMel, mel_filterbank  # noqa: E402

FRONTENDS = {
    "baseline 40x500": {},
    "zoo 256x431": dict(
        n_fft=2048, win_length=2048, hop_length=1024, window="hann", n_mels=256, trim_frames=0
    ),
}


def librosa_logmel(y: np.ndarray, fe: FrontendConfig, fb: np.ndarray) -> np.ndarray:
    import librosa

    window = "hamming" if fe.window == "hamming" else "hann"
    spec = np.abs(
        librosa.stft(
            y,
            n_fft=fe.n_fft,
            hop_length=fe.hop_length,
            win_length=fe.win_length,
            window=window,
            center=fe.center,
            pad_mode=fe.pad_mode,
        )  # fmt: skip
    )
    if fe.power != 1.0:
        spec = spec**fe.power
    return np.log(fb @ spec + fe.log_eps)[:, : fe.n_frames]


class DenseLogMel(LogMel):
    """The log-mel as tinyasc computed it before ``frontend.reflect_pad``, ``frontend.magnitude`` and
    ``frontend.band_groups``: torch.stft's own centring, the complex ``abs()`` and the dense
    filterbank product."""

    def spectrum(self, audio: torch.Tensor) -> torch.Tensor:
        return self.stft(audio, self.cfg.center)

    def log_mel(self, spec: torch.Tensor) -> torch.Tensor:
        mag = spec.abs()
        if self.cfg.power != 1.0:
            mag = mag**self.cfg.power
        return torch.log(torch.matmul(self.mel_fb, mag) + self.cfg.log_eps)


def ms(rows: list[tuple[float, float]]) -> str:
    """Median wall ms (median process CPU ms)."""
    return f"{1000 * statistics.median(r[0] for r in rows):.2f} ({1000 * statistics.median(r[1] for r in rows):.2f})"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--corpus", help="a TAU-layout root: also time the cold cache fill")
    p.add_argument("--files", type=int, default=320)
    a = p.parse_args()
    torch.set_num_threads(1)
    print(f"load average {os.getloadavg()[0]:.2f}; 1 thread; median of {a.rounds} rounds; ms per clip\n")
    print(
        "| frontend | tinyasc batch 1 | batch 4 | batch 16 | librosa | librosa / tinyasc batch 1 (wall) "
        "| before, batch 1 | batch 1 vs before (CPU) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    rng = np.random.default_rng(0)
    decode = []
    for name, overrides in FRONTENDS.items():
        fe = FrontendConfig(**overrides)
        logmel, before = LogMel(fe), DenseLogMel(fe)
        fmax = fe.fmax if fe.fmax is not None else fe.sample_rate / 2
        fb = mel_filterbank(fe.sample_rate, fe.n_fft, fe.n_mels, fe.fmin, fmax, fe.htk, fe.mel_norm).astype(
            np.float32
        )
        clips = rng.normal(0, 0.1, (16, fe.clip_samples)).astype(np.float32)
        wav = io.BytesIO()
        sf.write(wav, clips[0], fe.sample_rate, subtype="PCM_24", format="WAV")
        rows: dict[str, list[tuple[float, float]]] = {"1": [], "4": [], "16": [], "librosa": [], "before": []}
        with torch.no_grad():
            for _ in range(2):  # warm-up
                logmel(torch.from_numpy(clips))
                before(torch.from_numpy(clips[:1]))
                librosa_logmel(clips[0], fe, fb)
            for _ in range(a.rounds):
                for b in (1, 4, 16):
                    w, c = timed(logmel, torch.from_numpy(clips[:b]))
                    rows[str(b)].append((w / b, c / b))
                rows["librosa"].append(timed(librosa_logmel, clips[0], fe, fb))
                rows["before"].append(timed(before, torch.from_numpy(clips[:1])))
                wav.seek(0)
                decode.append(timed(sf.read, wav))

        ratio = statistics.median(r[0] for r in rows["librosa"]) / statistics.median(r[0] for r in rows["1"])
        gain = statistics.median(r[1] for r in rows["before"]) / statistics.median(r[1] for r in rows["1"])
        cells = " | ".join(ms(rows[k]) for k in ("1", "4", "16", "librosa"))
        print(f"| {name} | {cells} | {ratio:.2f}x | {ms(rows['before'])} | {gain:.2f}x |", flush=True)
    print(
        f"\ndecoding one 10-s 24-bit WAV (soundfile): {1000 * statistics.median(d[0] for d in decode):.2f} ms"
    )
    print("cells: wall ms (process CPU ms) per clip")
    if a.corpus:
        cache_fill(a.corpus, a.files)


def cache_fill(root: str, files: int) -> None:
    import tempfile

    from tinyasc.data import cache
    from tinyasc.data.index import load_tau

    index = load_tau(root, check_audio=False)
    paths = [index.path(c) for c in index.clips][:files]
    seconds: dict[int, list[float]] = {1: [], 16: []}
    feats = {}
    for _ in range(2):  # A B A B
        for batch in (1, 16):
            cache.FRONTEND_BATCH = batch
            with tempfile.TemporaryDirectory() as tmp:
                t = time.perf_counter()
                f = cache.cached_features(FrontendConfig(), paths, tmp, workers=2, progress=False)
                seconds[batch].append(time.perf_counter() - t)
                feats[batch] = np.array(f, dtype=np.float32)
    cache.FRONTEND_BATCH = 1
    one, sixteen = statistics.fmean(seconds[1]), statistics.fmean(seconds[16])
    print(
        f"\ncold cache fill of {len(paths)} clips (baseline frontend, 2 workers): clip by clip {one:.2f} s, "
        f"16 at a time {sixteen:.2f} s ({sixteen / one:.2f}x); same features: {np.array_equal(feats[1], feats[16])}"
    )


if __name__ == "__main__":
    main()
