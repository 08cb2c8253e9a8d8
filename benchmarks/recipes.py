"""Training recipes at equal budget: each augmentation, KD against no KD, the full recipe.

One student (default ``trident_resnet_c8``, 125 KB at float16, the fastest zoo model here) is trained with the same budget and base recipe
(Adam, peak lr 1e-3, one warm-up epoch then cosine decay, batch 16, the same epochs, best validation
accuracy) on the same synthetic corpus, once per option; every run is shipped at float16 and evaluated
on fold1_evaluate. The teachers for KD are an ensemble (default three seeds of the same architecture
trained with Freq-MixStyle and device impulse responses; ``--teacher`` picks a larger one where the
budget allows), made once through the code path of ``tinyasc teachers``. Prints accuracy, log loss, device A and unseen S4-S6 accuracy and the unseen-device gap.

With ``--seeds N`` every run is repeated with training seeds 0..N-1 (the teachers too) (sharing one
teacher ensemble) and the table gives the mean over seeds with the standard error of that mean, and each option's change of the gap
and the log loss against ``none`` paired by seed (the same seed gives the same initialisation and
batch order, so the pairing removes most of the seed-to-seed spread).

Usage: python benchmarks/recipes.py --out /tmp/recipes --corpus CORPUS [--epochs 15] [--seeds 1] [--runs a,b]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from tinyasc.config import load_config
from tinyasc.evaluate.run import evaluate_run
from tinyasc.train.run import fit
from tinyasc.workflows.teachers import train_teachers
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
    ap.add_argument(
        "--seeds", type=int, default=1, help="repeat every run with seeds 0..N-1 (one teacher ensemble)"
    )
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
    per_seed: dict[str, list[dict]] = {name: [] for name in names}
    for seed in range(a.seeds):  # every option of one seed before the next: a partial run stays paired
        for name in names:
            t = time.time()
            run_dir = a.out / "runs" / (name if seed == 0 else f"{name}_seed{seed}")
            if not (run_dir / "metrics.json").exists():
                extra = [o.format(teachers=teachers) for o in RUNS[name]]
                over = [*common_overrides(a.student, a.corpus, a.out, a), *extra, f"train.seed={seed}"]
                fit(load_config(None, over), run_dir, resume=(run_dir / "last.pt").exists(), progress=False)
                evaluate_run(run_dir)
            per_seed[name].append(summary(json.loads((run_dir / "metrics.json").read_text())))
            print(f"{name} seed {seed}: done in {time.time() - t:.0f} s", flush=True)
            (a.out / "recipes.json").write_text(json.dumps(per_seed, indent=2))

    print()
    print(
        f"student {a.student}; {a.epochs} epochs, Adam lr {a.lr} cosine, batch {a.batch_size}; float16 as shipped; "
        f"{a.seeds} seed(s): mean +- standard error over seeds"
    )
    print()
    print("| run | accuracy | log loss | A | S4-S6 (unseen) | gap A - unseen |")
    print("|---|---|---|---|---|---|")
    for name, runs in per_seed.items():
        cells = [mean_se([r[k] * scale for r in runs], digits, unit) for k, scale, digits, unit in KEYS]
        print(f"| {name} | " + " | ".join(cells) + " |")
    if "none" not in per_seed:
        return
    base = per_seed["none"]
    print()
    for name in (*DEVICE_ROBUST, "kd", "full"):
        if name not in per_seed:
            continue
        gap = [100 * (b["gap"] - r["gap"]) for b, r in zip(base, per_seed[name], strict=True)]
        ll = [b["logloss"] - r["logloss"] for b, r in zip(base, per_seed[name], strict=True)]
        print(
            f"{name}: unseen-device gap {'narrowed' if np.mean(gap) > 0 else 'NOT narrowed'} by "
            f"{mean_se(gap, 1)} points; log loss {'improved' if np.mean(ll) > 0 else 'NOT improved'} by "
            f"{mean_se(ll, 3)} (paired by seed)"
        )


KEYS = (  # key, scale, digits, unit
    ("accuracy", 100, 1, "%"),
    ("logloss", 1, 3, ""),
    ("device_a", 100, 1, "%"),
    ("unseen", 100, 1, "%"),
    ("gap", 100, 1, ""),
)


def mean_se(values: list[float], digits: int, unit: str = "") -> str:
    """The mean, and with several values the standard error of the mean."""
    v = np.asarray(values, dtype=float)
    if len(v) == 1:
        return f"{v[0]:.{digits}f}{unit}"
    se = v.std(ddof=1) / np.sqrt(len(v))
    return f"{v.mean():.{digits}f}{unit} +- {se:.{digits}f}"


if __name__ == "__main__":
    main()
