"""Streaming speed: per-hop latency and real-time factor, one thread.

    python benchmarks/stream_speed.py [--models dcase2021_baseline bcresnet_asc_c20 cpresnet_c20] [--seconds 60]
                                      [--runtime auto|onnxruntime|torch]

Streams a noise recording through ``stream_predict`` (hop 1 s, window = the model's 10 s clip) with
each model as registered (untrained weights: the time is the same), its own frontend, on one thread,
in the runtime ``tinyasc stream --runtime`` would use (``auto``, its default: onnxruntime for a float
model; the model file is saved and loaded by ``load_model`` as the command does, its export cached in
a temporary folder),
and prints the median and worst time per hop (log-mel of the window + the model) and the real-time
factor (processing time over audio time), with the incremental log-mel (the default) and with every
window's log-mel computed whole, interleaved A B A B, and the ratio of their median hops; beside the
wall times, the process CPU time per hop (the whole stream's CPU time over its hops, decoding included).
State the machine's load (printed) beside the figures.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from tinyasc import artifact
from tinyasc.config import FrontendConfig
from tinyasc.evaluate.predict import RUNTIMES, load_model
from tinyasc.evaluate.stream import file_blocks, stream_predict
from tinyasc.frontend import Normalizer
from tinyasc.models import create_model, get_model_info
from tinyasc.storage import Storage


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--models", nargs="+", default=["dcase2021_baseline", "bcresnet_asc_c20", "cpresnet_c20"])
    p.add_argument("--seconds", type=int, default=60)
    p.add_argument("--hop", type=float, default=1.0)
    p.add_argument("--runtime", choices=RUNTIMES, default="auto")
    a = p.parse_args()
    torch.set_num_threads(1)
    print(
        f"load average {os.getloadavg()}; 1 thread; hop {a.hop} s; {a.seconds} s of audio; "
        f"--runtime {a.runtime}\n"
    )
    print(
        "| model | frontend | per hop median ms | per hop max ms | CPU ms per hop | real-time factor | "
        "whole-window log-mel: median ms (CPU ms per hop) | incremental speed-up |"
    )
    print("|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["TINYASC_CACHE"] = tmp  # the exports of these untrained models are not kept
        path = Path(tmp) / "noise.wav"
        sf.write(path, np.random.default_rng(0).normal(0, 0.1, 44100 * a.seconds).astype(np.float32), 44100)
        for name in a.models:
            info = get_model_info(name)
            fe = replace(FrontendConfig(), **info.frontend)
            model_file = Path(tmp) / f"{name}.pt"
            state = create_model(name).state_dict()
            art = artifact.new_artifact(
                name, {}, "abcdefghij", fe, Normalizer(info.n_mels), 0, Storage.FLOAT32, state
            )
            artifact.save(art, model_file)
            lm = load_model(model_file, a.runtime)
            runs = {True: [], False: []}
            cpu = {True: [], False: []}
            for _ in range(2):  # A B A B
                for incremental in (True, False):
                    c0 = time.process_time()
                    _, stats = stream_predict(
                        lm, file_blocks(path, 4096), a.hop, out=io.StringIO(), incremental=incremental
                    )
                    cpu[incremental].append((time.process_time() - c0) / max(stats.hops, 1))
                    runs[incremental].append(stats)
            ms = [1000 * s for st in runs[True] for s in st.hop_seconds]
            whole = [1000 * s for st in runs[False] for s in st.hop_seconds]
            rtf = statistics.fmean(st.real_time_factor for st in runs[True])
            print(
                f"| {name} ({lm.storage}) | {info.n_mels}x{info.frames} | {statistics.median(ms):.1f} | {max(ms):.1f} | "
                f"{1000 * statistics.fmean(cpu[True]):.1f} | {rtf:.4f} | {statistics.median(whole):.1f} "
                f"({1000 * statistics.fmean(cpu[False]):.1f}) | {statistics.median(whole) / statistics.median(ms):.2f}x |",
                flush=True,
            )


if __name__ == "__main__":
    main()
