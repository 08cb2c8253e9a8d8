"""DCASE 2024 data-efficient training on the synthetic corpus: one run per training subset.

    python benchmarks/subsets.py --out /tmp/subsets [--per-class-device 4] [--epochs 30] [--seeds 0]

Writes a synthetic corpus in the 2022 layout (``tinyasc synth --layout tau2022``: 10-s clips cut into
1-s snippets), the five subsets (``split_setup/split{5,10,25,50,100}.csv``), then trains
``configs/cpmobile_dcase2024.yaml`` (the 2024 baseline's network, float16, 2024 rules) on each subset
for the same number of epochs and evaluates it on the whole evaluate split (devices A-C, S1-S6).
Prints per subset: training snippets, macro class-wise accuracy and log loss (mean ± std over the seeds
when more than one), the 2024 verdict, and training wall and process CPU time, with the machine's
load. Resumable: a finished run is read back. The synthetic corpus says how the pipeline scales with
data, not what the real recordings would give (the 2024 baseline's published figures: README).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from tinyasc.config import load_config
from tinyasc.data.tau2022 import SUBSETS, subset_path, write_subsets
from tinyasc.evaluate.run import evaluate_run
from tinyasc.rundir import RunDir
from tinyasc.train.run import fit


def corpus(out: Path, per_class_device: int) -> Path:
    root = out / f"tau2022_pcd{per_class_device}"
    if not (root / "tau2022.json").exists():
        cmd = [sys.executable, "-m", "tinyasc.cli", "synth", str(root), "--layout", "tau2022"]
        subprocess.run([*cmd, "--per-class-device", str(per_class_device), "--quiet"], check=True)
    if not subset_path(root, 100).exists():
        write_subsets(root)
    return root


def one_run(root: Path, out: Path, percent: int, seed: int, epochs: int, batch: int) -> dict:
    run_dir = out / f"split{percent}_seed{seed}"
    run = RunDir(run_dir)
    cfg = load_config(
        "configs/cpmobile_dcase2024.yaml",
        [
            f"data.root={root}",
            f"data.cache_dir={out / 'cache'}",
            f"data.subset={percent}",
            f"train.epochs={epochs}",
            f"train.batch_size={batch}",
            f"train.seed={seed}",
        ],
    )
    timing = run_dir / "bench_timing.txt"
    if not run.evaluation():
        wall, cpu = time.perf_counter(), time.process_time()
        fit(cfg, run_dir, resume=run.has_checkpoint, progress=False)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        timing.write_text(f"{wall} {cpu}\n")
        evaluate_run(run_dir)
    wall, cpu = (float(v) for v in timing.read_text().split())
    m = run.evaluation()
    return {
        "clips": len(subset_path(root, percent).read_text().splitlines()) - 1,
        "accuracy": 100 * m["overall"]["accuracy"],
        "logloss": m["overall"]["logloss"],
        "verdict": run.size()["rules"],
        "wall": wall,
        "cpu": cpu,
    }


def spread(values: list[float], fmt: str) -> str:
    if len(values) == 1:
        return format(values[0], fmt)
    return f"{format(statistics.fmean(values), fmt)} ± {format(statistics.stdev(values), fmt)}"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--per-class-device", type=int, default=4)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    a = p.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    root = corpus(a.out, a.per_class_device)
    print(f"load before: {os.getloadavg()[0]:.2f} (1-min average), {os.cpu_count()} cores")
    print(f"corpus {root}: {a.epochs} epochs, batch {a.batch_size}, seeds {a.seeds}\n")
    print("| subset | training snippets | accuracy (macro) | log loss | 2024 verdict | train wall / CPU s |")
    print("|---|---|---|---|---|---|")
    for percent in SUBSETS:
        runs = [one_run(root, a.out, percent, s, a.epochs, a.batch_size) for s in a.seeds]
        v = runs[0]["verdict"]
        verdict = f"{'PASS' if v['passes'] else 'FAIL'} ({v['counted']:,} B, {v['macs_per_second'] / 1e6:.2f} M MACs/s)"
        print(
            f"| {percent}% | {runs[0]['clips']:,} | {spread([r['accuracy'] for r in runs], '.1f')}% | "
            f"{spread([r['logloss'] for r in runs], '.3f')} | {verdict} | "
            f"{statistics.fmean(r['wall'] for r in runs):.0f} / {statistics.fmean(r['cpu'] for r in runs):.0f} |",
            flush=True,
        )
    print(f"\nload after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
