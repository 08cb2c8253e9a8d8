"""Model zoo side by side: the baseline and the best budget variant of every family, same budget.

Every model is trained with the same recipe and budget on the same synthetic corpus (by default Adam,
peak lr 1e-3, one warm-up epoch then cosine decay, batch 16, 15 epochs; the best validation
accuracy picks the checkpoint), on the frontend its variant is registered with, then shipped at float16
and evaluated as stored on fold1_evaluate. Same recipe for all isolates the architecture; the per-family
recipes of the authors live in configs/ for full-length training on the real data.

Prints a table: class-wise accuracy and log loss on fold1_evaluate, accuracy on unseen devices S4-S6
and on device A, parameters, shipped bytes (DCASE 2021 rule), MACs per 10 s clip and training
throughput (clips per second over the training passes on this machine).

Usage: python benchmarks/zoo.py --out /tmp/zoo [--per-class-device 12] [--epochs 15] [--models a,b]
       (--corpus PATH reuses an existing corpus; runs already finished are read back, unfinished resumed)
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from tinyasc.compress.macs import count_macs
from tinyasc.config import load_config
from tinyasc.data.synth import SynthSpec, write_corpus
from tinyasc.evaluate.run import evaluate_run
from tinyasc.models import create_model, get_model_info
from tinyasc.train.run import fit

# The baseline, then per family its budget variant that ships at float16 (BC-ResNet-ASC: c20, below the
# baseline's size; c28 fits the limit too but is larger than the baseline).
DEFAULT_MODELS = (
    "dcase2021_baseline",
    "bcresnet_asc_c20",
    "cpresnet_c20",
    "resnet_c12",
    "mobilenetv2_s",
    "efficientnet_s",
    "separable_cnn_s",
    "inception_s",
    "trident_resnet_c8",
)


def common_overrides(name: str, corpus: Path, out: Path, a) -> list[str]:
    """The shared recipe of the benchmarks, on the frontend the model is registered with."""
    info = get_model_info(name)
    return [
        f"model.name={name}",
        f"data.root={corpus}",
        f"data.cache_dir={out / 'cache'}",
        f"train.epochs={a.epochs}",
        f"train.batch_size={a.batch_size}",
        "train.optimizer=adam",
        f"train.lr={a.lr}",
        "train.schedule=cosine",
        "train.warmup_epochs=1",
        "train.select_after=0",
        f"train.threads={a.threads}",
        "quantize=float16",
    ] + [f"frontend.{k}={v}" for k, v in info.frontend.items()]


def run_one(name: str, corpus: Path, out: Path, a) -> dict:
    run_dir = out / "runs" / name
    if not (run_dir / "metrics.json").exists():
        fit(
            load_config(None, common_overrides(name, corpus, out, a)),
            run_dir,
            resume=(run_dir / "last.pt").exists(),
            progress=False,
        )
        evaluate_run(run_dir)
    m = json.loads((run_dir / "metrics.json").read_text())
    epochs = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    seconds = sum(e["train_seconds"] for e in epochs)
    model = create_model(name)
    return {
        "model": name,
        "accuracy": m["overall"]["accuracy"],
        "logloss": m["overall"]["logloss"],
        "unseen": m["group_wise"]["unseen"]["accuracy"],
        "device_a": m["device_wise"]["a"]["accuracy"],
        "params": sum(p.numel() for p in model.parameters()),
        "bytes": m["size_bytes"],
        "macs": count_macs(model).total,
        "clips_per_s": sum(e["train_clips"] for e in epochs) / seconds,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--corpus", type=Path, help="existing corpus (default: synthesise OUT/corpus)")
    ap.add_argument("--per-class-device", type=int, default=12)
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--models", default=",".join(DEFAULT_MODELS))
    ap.add_argument("--workers", type=int, default=2)
    a = ap.parse_args()

    corpus = a.corpus or a.out / "corpus"
    if a.corpus is None:
        write_corpus(corpus, SynthSpec(per_class_device=a.per_class_device), workers=a.workers)
    rows = []
    for name in a.models.split(","):
        t = time.time()
        rows.append(run_one(name.strip(), corpus, a.out, a))
        print(f"{name}: done in {time.time() - t:.0f} s", flush=True)
        (a.out / "zoo.json").write_text(json.dumps(rows, indent=2))
    base = next((r for r in rows if r["model"] == "dcase2021_baseline"), None)
    print()
    print(
        f"corpus {corpus}; {a.epochs} epochs, Adam lr {a.lr} cosine, batch {a.batch_size}; float16 as shipped"
    )
    print()
    print("| model | accuracy | log loss | S4-S6 | A | params | bytes | MMACs | train clips/s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['model']} | {100 * r['accuracy']:.1f}% | {r['logloss']:.3f} | {100 * r['unseen']:.1f}% | "
            f"{100 * r['device_a']:.1f}% | {r['params']:,} | {r['bytes']:,} | {r['macs'] / 1e6:.1f} | "
            f"{r['clips_per_s']:.1f} |"
        )
    if base is not None:
        better = [
            r["model"]
            for r in rows
            if r is not base
            and r["accuracy"] > base["accuracy"]
            and r["logloss"] < base["logloss"]
            and r["bytes"] <= base["bytes"]
        ]
        print()
        print(
            f"beat the baseline on accuracy and log loss at the same or lower size: {', '.join(better) or 'none'}"
        )


if __name__ == "__main__":
    main()
