"""The compression recipe measured: a large CP-ResNet pruned and quantised into 128,000 bytes.

1. Train the source model (default ``cpresnet_c40``, 166,220 parameters: 344,560 bytes at float16, too
   large to ship) with the zoo's common recipe on the zoo's corpus (benchmarks/zoo.py), evaluated at
   float32 as the uncompressed reference.
2. Compress it with ``tinyasc compress`` in several ways, each a new run evaluated as stored:
   float16 and int8-ptq alone (no training; neither fits), and the recipe, prune+int8-qat to
   ``--target-bytes 128000`` (pruning, then quantisation-aware int8, in one short fine-tune), beside
   prune+int8-ptq and prune+float16 to the same byte target.
3. Print the table (method, bytes, accuracy, log loss, unseen-device accuracy, fits) and check the two
   claims: the recipe stays within 1 point of the uncompressed model's accuracy, and it beats every
   uncompressed model that fits the budget in the zoo's table (``--zoo-json``, written by
   benchmarks/zoo.py with the same corpus and recipe).

Usage: python benchmarks/compression.py --out OUT --corpus CORPUS [--zoo-json ZOO/zoo.json]
       [--model cpresnet_c40] [--epochs 15] [--finetune-epochs 5] [--methods a,b]
Finished steps are read back, so an interrupted run continues where it stopped.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from tinyasc.workflows.compress import CompressOptions, compress_run
from zoo import run_one  # benchmarks/zoo.py: the same shared recipe

LIMIT = 128_000
METHODS = {
    # name: (method, options)
    "float16": ("float16", {}),
    "int8-ptq": ("int8-ptq", {}),
    "prune+float16": ("prune+float16", {"target_bytes": LIMIT}),
    "prune+int8-ptq": ("prune+int8-ptq", {"target_bytes": LIMIT}),
    "prune+int8-qat": ("prune+int8-qat", {"target_bytes": LIMIT}),
}
RECIPE = "prune+int8-qat"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--corpus", type=Path, required=True)
    ap.add_argument("--zoo-json", type=Path, help="zoo.json of benchmarks/zoo.py on the same corpus")
    ap.add_argument("--model", default="cpresnet_c40")
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--finetune-epochs", type=int, default=5)
    ap.add_argument("--methods", default=",".join(METHODS))
    a = ap.parse_args()

    t = time.time()
    run_one(a.model, a.corpus, a.out, a)  # trains (or reads back) OUT/runs/MODEL, float16 as shipped
    src_run = a.out / "runs" / a.model
    print(f"{a.model}: source ready in {time.time() - t:.0f} s", flush=True)
    rows = []
    # the uncompressed reference: the float32 weights, evaluated as they are
    ref = _compress(src_run, a.out / "compressed" / "float32", "float32", {}, a)
    rows.append(("uncompressed (float32)", ref))
    for name in a.methods.split(","):
        method, opts = METHODS[name.strip()]
        rows.append(
            (name, _compress(src_run, a.out / "compressed" / name.replace("+", "_"), method, opts, a))
        )
    (a.out / "compression.json").write_text(json.dumps(rows, indent=2))

    print()
    print(
        f"{a.model} on {a.corpus}: {a.epochs} epochs (zoo recipe), fine-tunes {a.finetune_epochs} epochs "
        f"at a tenth of the lr; evaluated as stored on fold1_evaluate"
    )
    print()
    print("| method | bytes | fits | sparsity | accuracy | log loss | S4-S6 (unseen) | fine-tune s |")
    print("|---|---|---|---|---|---|---|---|")
    for name, r in rows:
        ev, size = r["evaluation"], r["size"]
        sp = f"{r['sparsity']:.3f}" if r.get("sparsity") else "-"
        print(
            f"| {name} | {size['nonzero_bytes']:,} | {'yes' if size['fits'] else 'no'} | {sp} | "
            f"{100 * ev['accuracy']:.1f}% | {ev['logloss']:.3f} | {100 * ev['unseen_accuracy']:.1f}% | "
            f"{r['seconds'] if r.get('trained') else '-'} |"
        )
    recipe = dict(rows).get(RECIPE)
    if recipe is None:
        return
    acc, ref_acc = recipe["evaluation"]["accuracy"], ref["evaluation"]["accuracy"]
    print()
    print(
        f"{RECIPE}: {recipe['size']['nonzero_bytes']:,} bytes, accuracy {100 * acc:.1f}% against "
        f"{100 * ref_acc:.1f}% uncompressed: {'within' if ref_acc - acc <= 0.01 else 'NOT within'} 1 point"
    )
    if a.zoo_json and a.zoo_json.exists():
        budget = [r for r in json.loads(a.zoo_json.read_text()) if r["bytes"] <= LIMIT]
        best = max(budget, key=lambda r: r["accuracy"])
        beaten = all(acc > r["accuracy"] for r in budget)
        print(
            f"uncompressed models within the budget ({len(budget)} in {a.zoo_json}): best {best['model']} "
            f"{100 * best['accuracy']:.1f}%; the recipe {'beats every one' if beaten else 'does NOT beat every one'}"
        )
        for r in sorted(budget, key=lambda r: -r["accuracy"]):
            print(
                f"  {r['model']}: {100 * r['accuracy']:.1f}%, log loss {r['logloss']:.3f}, {r['bytes']:,} B"
            )


def _compress(src_run: Path, out: Path, method: str, opts: dict, a) -> dict:
    done = out / "compress.json"
    if done.exists():
        return json.loads(done.read_text())
    trains = method.startswith("prune") or method == "int8-qat"
    options = CompressOptions(**opts)
    if trains:
        options.epochs = a.finetune_epochs
        options.overrides = [f"train.threads={a.threads}"]
    t = time.time()
    rec = compress_run(
        src_run, out, method, options, resume=out.with_name(out.name + ".partial").exists(), progress=False
    )
    print(f"{method}: {rec['size']['nonzero_bytes']:,} bytes in {time.time() - t:.0f} s", flush=True)
    return rec


if __name__ == "__main__":
    main()
