"""Calibration of the synthetic corpus (issue: synthetic corpus, item 7).

Builds a corpus of at least 100 files per class and device (capped by the real split: B/C/S1-S3 have
about 75 per class in fold1_train, and fold1_evaluate about 33 per class and device), trains the DCASE
2021 baseline on all training devices and on device A alone with the same shortened recipe, evaluates
both on fold1_evaluate and prints the figures the corpus must meet:

- class-wise accuracy of the all-device model between 45% and 85%;
- accuracy on unseen devices S4-S6 at least 5 points below device A;
- the A-only model loses clearly more on the S devices than the all-device model.

Usage: python benchmarks/calibration.py --out /tmp/calib [--per-class-device 100] [--epochs 20]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from tinyasc.config import load_config
from tinyasc.data.synth import SynthSpec, write_corpus
from tinyasc.evaluate.run import evaluate_run
from tinyasc.train.run import fit

S_DEVICES = ("s1", "s2", "s3", "s4", "s5", "s6")


def train_and_evaluate(
    corpus: Path, run_dir: Path, cache: Path, epochs: int, select_after: int, extra: list[str]
):
    if (run_dir / "metrics.json").exists():
        return json.loads((run_dir / "metrics.json").read_text())
    cfg = load_config(
        Path(__file__).resolve().parents[1] / "configs" / "baseline.yaml",
        [
            f"data.root={corpus}",
            f"data.cache_dir={cache}",
            f"train.epochs={epochs}",
            f"train.select_after={select_after}",
            *extra,
        ],
    )
    fit(cfg, run_dir, resume=(run_dir / "last.pt").exists(), progress=False)
    return evaluate_run(run_dir)


def s_accuracy(m: dict) -> float:
    accs = [m["device_wise"][d]["accuracy"] for d in S_DEVICES]
    return sum(accs) / len(accs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--per-class-device", type=int, default=100)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--select-after", type=int, default=5)
    ap.add_argument("--workers", type=int, default=2)
    a = ap.parse_args()

    t0 = time.time()
    corpus = a.out / "corpus"
    counts = write_corpus(corpus, SynthSpec(per_class_device=a.per_class_device), workers=a.workers)
    t_synth = time.time() - t0
    cache = a.out / "cache"
    runs = {}
    for name, extra in (("all devices", []), ("device A only", ["data.train_devices=[a]"])):
        t = time.time()
        runs[name] = train_and_evaluate(
            corpus, a.out / name.replace(" ", "_"), cache, a.epochs, a.select_after, extra
        )
        runs[name]["seconds"] = time.time() - t

    print(
        f"corpus: {counts['train']} train + {counts['evaluate']} evaluate files "
        f"({a.per_class_device} per class and device, capped by the real split); built in {t_synth:.0f} s"
    )
    print(
        f"recipe: DCASE 2021 baseline, {a.epochs} epochs (best validation accuracy after epoch {a.select_after})"
    )
    print()
    print("| trained on | accuracy | log loss | A | B | C | S1-S3 | S4-S6 | all S | train+eval time |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, m in runs.items():
        dw, gw = m["device_wise"], m["group_wise"]
        print(
            f"| {name} | {100 * m['overall']['accuracy']:.1f}% | {m['overall']['logloss']:.3f} | "
            f"{100 * dw['a']['accuracy']:.1f}% | {100 * dw['b']['accuracy']:.1f}% | {100 * dw['c']['accuracy']:.1f}% | "
            f"{100 * gw['seen']['accuracy']:.1f}% | {100 * gw['unseen']['accuracy']:.1f}% | "
            f"{100 * s_accuracy(m):.1f}% | {m['seconds']:.0f} s |"
        )
    full, a_only = runs["all devices"], runs["device A only"]
    acc = full["overall"]["accuracy"]
    gap = full["device_wise"]["a"]["accuracy"] - full["group_wise"]["unseen"]["accuracy"]
    loss_full = full["device_wise"]["a"]["accuracy"] - s_accuracy(full)
    loss_a = a_only["device_wise"]["a"]["accuracy"] - s_accuracy(a_only)
    print()
    print(f"[{'ok' if 0.45 <= acc <= 0.85 else 'FAIL'}] class-wise accuracy {100 * acc:.1f}% within 45-85%")
    print(f"[{'ok' if gap >= 0.05 else 'FAIL'}] unseen S4-S6 {100 * gap:.1f} points below device A (>= 5)")
    print(
        f"[{'ok' if loss_a > loss_full + 0.05 else 'FAIL'}] A -> S-device drop: A-only {100 * loss_a:.1f} points, "
        f"all devices {100 * loss_full:.1f} points"
    )


if __name__ == "__main__":
    main()
