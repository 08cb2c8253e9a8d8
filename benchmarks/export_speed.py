"""Latency of one 10 s clip on one CPU thread: float32, float16 and int8, in PyTorch and onnxruntime.

For a trained run: the float model (``model.pt``) in PyTorch at float32 and in half precision
(``model.half()``), its PyTorch int8 model (tinyasc's post-training quantisation calibrated on the run's
training clips, computed in float32 from its integers), and the three ONNX exports of ``tinyasc export`` (float32, float16,
onnxruntime static int8) in onnxruntime with one intra-op thread. Each figure is the median over
``--repeat`` calls with batch 1 after ``--warmup`` calls; the log-mel frontend of the clip is timed
apart (it is the same for every model). All in one process, so the ratios compare like with like.

Usage: python benchmarks/export_speed.py RUN [--repeat 30] [--warmup 5] [--out DIR]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from tinyasc.compress import int8
from tinyasc.compress.size import example_input
from tinyasc.export import Deployable, OnnxModel, export_onnx, load_float_run
from tinyasc.frontend import LogMel
from tinyasc.rundir import RunDir
from tinyasc.train.run import calibration_batches


def median_ms(fn, repeat: int, warmup: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1000 * float(np.median(times))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--repeat", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--out", type=Path, help="keep the ONNX files here (default: a temporary folder)")
    a = ap.parse_args()
    torch.set_num_threads(1)

    from tinyasc.data.dataset import prepare_splits

    cfg = RunDir(a.run).config()
    art, model, norm = load_float_run(a.run)
    splits = prepare_splits(cfg.data, cfg.frontend)
    x = torch.from_numpy(np.asarray(splits.features[splits.rows(splits.evaluate)[:1]], dtype=np.float32))[
        :, None
    ]
    wave = torch.randn(1, cfg.frontend.clip_samples) * 0.1

    rows = []
    logmel = LogMel(cfg.frontend)
    with torch.no_grad():
        rows.append(
            ("frontend (log-mel of 10 s)", "PyTorch", median_ms(lambda: logmel(wave), a.repeat, a.warmup))
        )
        f32 = Deployable(norm, model).eval()
        rows.append(("model float32", "PyTorch", median_ms(lambda: f32(x), a.repeat, a.warmup)))
        import copy

        f16 = Deployable(norm, copy.deepcopy(model).half(), half=True).eval()
        rows.append(("model float16", "PyTorch", median_ms(lambda: f16(x), a.repeat, a.warmup)))
        prepared = int8.prepare(model, example_input(model))
        int8.calibrate(prepared, calibration_batches(splits.features, splits.rows(splits.train), norm, cfg)())
        q = int8.convert(prepared)
        rows.append(("model int8 (tinyasc)", "PyTorch", median_ms(lambda: q(norm(x)), a.repeat, a.warmup)))

    with tempfile.TemporaryDirectory() as tmp:
        folder = a.out or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        sizes = {}
        for precision in ("float32", "float16", "int8"):
            path = folder / f"model_{precision}.onnx"
            c = export_onnx(a.run, path, precision, check_clips=64, calibration_clips=128)
            sizes[precision] = c["bytes_on_disk"]
            session = OnnxModel(path, threads=1).session
            feed = {"logmel": x.numpy()}
            rows.append(
                (
                    f"model {precision}",
                    "onnxruntime",
                    median_ms(lambda s=session, f=feed: s.run(None, f), a.repeat, a.warmup),
                )
            )

    print(f"{art['model_name']} from {a.run}; one clip ({x.shape[2]} x {x.shape[3]}), batch 1, 1 thread")
    print(f"median of {a.repeat} calls after {a.warmup} warm-up calls")
    print()
    print("| what | runtime | ms per clip | vs PyTorch float32 |")
    print("|---|---|---|---|")
    base = rows[1][2]
    for name, runtime, ms in rows:
        print(f"| {name} | {runtime} | {ms:.2f} | {ms / base:.2f}x |")
    print()
    print("ONNX file sizes: " + ", ".join(f"{k} {v:,} B" for k, v in sizes.items()))


if __name__ == "__main__":
    main()
