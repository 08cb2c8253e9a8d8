"""Training recipes at equal budget: each augmentation, KD against no KD, the full recipe.

One student (default ``trident_resnet_c8``, 125 KB at float16, the fastest zoo model here) is trained with the same budget and base recipe
(Adam, peak lr 1e-3, one warm-up epoch then cosine decay, batch 16, the same epochs, best validation
accuracy) on the same synthetic corpus, once per option; every run is shipped at float16 and evaluated
on fold1_evaluate. The teachers for KD are an ensemble (default three seeds of the same architecture
trained with Freq-MixStyle and device impulse responses; ``--teacher`` picks a larger one where the
budget allows), made once through the code path of ``tinyasc teachers``. Prints accuracy, log loss, device A and unseen S4-S6 accuracy and the unseen-device gap.

Usage: python benchmarks/recipes.py --out /tmp/recipes --corpus CORPUS [--epochs 15] [--runs a,b]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from tinyasc.config import load_config
from tinyasc.distill.teachers import train_teachers
from tinyasc.evaluate.run import evaluate_run
from tinyasc.train.run import fit
from zoo import common_overrides  # benchmarks/zoo.py: the same shared recipe

DEVICE_ROBUST = ("dir", "device_translation", "mixstyle")
RUNS = {
    "none": [],
    "specaugment": ["augment.specaugment_freq_masks=2", "augment.specaugment_time_masks=2"],
    "freq_shift": ["augment.freq_shift=4"],
    "mixstyle": ["augment.mixstyle_p=0.6", "augment.mixstyle_alpha=0.3"],
    "dir": ["augment.dir_p=0.6"],
    "device_translation": ["augment.device_translation_p=0.5"],
    "roll_gain": ["augment.roll_max_seconds=1.0", "augment.gain_db=6"],
    "mixup": ["augment.mixup_alpha=0.3"],
    "kd": ["train.kd_logits={teachers}", "train.kd_weight=0.5", "train.kd_temperature=2"],
    "full": [
        "augment.mixstyle_p=0.6",
        "augment.dir_p=0.6",
        "augment.device_translation_p=0.5",
        "augment.specaugment_freq_masks=2",
        "train.kd_logits={teachers}",
        "train.kd_weight=0.5",
        "train.kd_temperature=2",
    ],
}


def summary(m: dict) -> dict:
    a = m["device_wise"]["a"]["accuracy"]
    unseen = m["group_wise"]["unseen"]["accuracy"]
    return {
        "accuracy": m["overall"]["accuracy"],
        "logloss": m["overall"]["logloss"],
        "device_a": a,
        "unseen": unseen,
        "gap": a - unseen,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--corpus", type=Path, required=True)
    ap.add_argument("--student", default="trident_resnet_c8")
    ap.add_argument("--teacher", default="trident_resnet_c8")
    ap.add_argument("--teachers", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", default=",".join(RUNS))
    a = ap.parse_args()

    names = [r.strip() for r in a.runs.split(",")]
    teachers = a.out / "teachers"
    if any("{teachers}" in o for r in names for o in RUNS[r]) and not (teachers / "logits.npz").exists():
        t = time.time()
        extra = ["augment.mixstyle_p=0.6", "augment.dir_p=0.6"]
        cfgs = [
            load_config(None, [*common_overrides(a.teacher, a.corpus, a.out, a), *extra, f"train.seed={s}"])
            for s in range(a.teachers)
        ]
        rec = train_teachers(cfgs, teachers, progress=False)
        print(
            f"teachers: {a.teachers} x {a.teacher} in {time.time() - t:.0f} s; "
            f"training-fold accuracy {rec['training_fold_accuracy']:.3f}",
            flush=True,
        )
    rows = {}
    for name in names:
        run_dir = a.out / "runs" / name
        t = time.time()
        if not (run_dir / "metrics.json").exists():
            extra = [o.format(teachers=teachers) for o in RUNS[name]]
            cfg = load_config(None, [*common_overrides(a.student, a.corpus, a.out, a), *extra])
            fit(cfg, run_dir, resume=(run_dir / "last.pt").exists(), progress=False)
            evaluate_run(run_dir)
        rows[name] = summary(json.loads((run_dir / "metrics.json").read_text()))
        print(f"{name}: done in {time.time() - t:.0f} s", flush=True)
        (a.out / "recipes.json").write_text(json.dumps(rows, indent=2))

    print()
    print(
        f"student {a.student}; {a.epochs} epochs, Adam lr {a.lr} cosine, batch {a.batch_size}; float16 as shipped"
    )
    print()
    print("| run | accuracy | log loss | A | S4-S6 (unseen) | gap A - unseen |")
    print("|---|---|---|---|---|---|")
    for name, r in rows.items():
        print(
            f"| {name} | {100 * r['accuracy']:.1f}% | {r['logloss']:.3f} | {100 * r['device_a']:.1f}% | "
            f"{100 * r['unseen']:.1f}% | {100 * r['gap']:.1f} |"
        )
    if "none" in rows:
        base = rows["none"]
        print()
        for name in DEVICE_ROBUST:
            if name in rows:
                d = 100 * (base["gap"] - rows[name]["gap"])
                print(
                    f"{name}: unseen-device gap {'narrowed' if d > 0 else 'NOT narrowed'} by {d:.1f} points"
                )
        if "kd" in rows:
            d = base["logloss"] - rows["kd"]["logloss"]
            print(f"kd: log loss {'improved' if d > 0 else 'NOT improved'} by {d:.3f}")


if __name__ == "__main__":
    main()
