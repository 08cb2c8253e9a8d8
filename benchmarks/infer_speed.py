"""Inference speed of one clip: the frontend, the model in PyTorch and in onnxruntime, one thread.

    python benchmarks/infer_speed.py [--models dcase2021_baseline bcresnet_asc_c20 ...] [--calls 20]

For each model as registered (untrained weights: the time is the same) builds its frontend and exports
the model (normalisation inside, as ``tinyasc predict --runtime onnxruntime`` does), then times one
clip at batch 1 on one thread: the log-mel of the clip, the PyTorch model and the onnxruntime session,
interleaved call by call (A B A B) so that the machine's load falls on both alike. Prints the median
wall time per call, the process CPU time per call, and the ratio PyTorch / onnxruntime, with the load.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

import torch

from timing import timed
from tinyasc.config import FrontendConfig
from tinyasc.export import INPUT, Deployable, export_module, onnx_session
from tinyasc.frontend import LogMel, Normalizer
from tinyasc.models import create_model, get_model_info

DEFAULT = ["dcase2021_baseline", "bcresnet_asc_c20", "cpresnet_c20", "mobilenetv2_s", "cpmobile_dcase2024"]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--models", nargs="+", default=DEFAULT)
    p.add_argument("--calls", type=int, default=20)
    a = p.parse_args()
    torch.set_num_threads(1)
    print(f"load average {os.getloadavg()[0]:.2f}; 1 thread; batch 1; median of {a.calls} calls\n")
    print(
        "| model | input | frontend ms | PyTorch model ms (CPU ms) | onnxruntime model ms (CPU ms) | "
        "PyTorch / onnxruntime | with the frontend |"
    )
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp, torch.no_grad():
        for name in a.models:
            info = get_model_info(name)
            fe = FrontendConfig(**info.frontend)
            logmel = LogMel(fe)
            module = Deployable(Normalizer(info.n_mels), create_model(name).eval()).eval()
            audio = torch.randn(1, fe.clip_samples) * 0.1
            x = logmel(audio)
            path = Path(tmp) / f"{name}.onnx"
            export_module(module, x, path)
            session = onnx_session(path, threads=1)
            xn = x.numpy()
            for _ in range(3):  # warm-up
                module(x)
                session.run(None, {INPUT: xn})
            fe_t, pt, ort = [], [], []
            for _ in range(a.calls):
                fe_t.append(timed(logmel, audio))
                pt.append(timed(module, x))
                ort.append(timed(session.run, None, {INPUT: xn}))

            def ms(rows, i):
                return 1000 * statistics.median(r[i] for r in rows)

            print(
                f"| {name} | {info.n_mels}x{info.frames} | {ms(fe_t, 0):.1f} | {ms(pt, 0):.1f} ({ms(pt, 1):.1f}) | "
                f"{ms(ort, 0):.1f} ({ms(ort, 1):.1f}) | {ms(pt, 0) / ms(ort, 0):.2f}x | "
                f"{(ms(fe_t, 0) + ms(pt, 0)) / (ms(fe_t, 0) + ms(ort, 0)):.2f}x |",
                flush=True,
            )


if __name__ == "__main__":
    main()
