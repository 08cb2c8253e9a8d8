"""Real recordings: ESC-10 5-fold cross-validation of the DCASE baseline, the real-audio recipe,
distillation, budget ensembles and the zoo's families.

    python benchmarks/real_audio.py --esc10 ../shared/esc10 --out /tmp/real_audio [--epochs 100]
        [--families resnet trident separable ...] [--family-epochs 40]

Every entry is a ``tinyasc crossval`` (resumable: finished folds are read back), so each of the five
runs of an entry trains on three folds, selects its epoch on the fourth and is evaluated on the
held-out fifth; no held-out fold is seen before its evaluation, and nothing here was tuned on a
held-out fold. Entries:

- ``baseline`` (seeds 0 and 1): ``configs/baseline.yaml``, 100 epochs; ``small``: the baseline with
  filters 8-8-16 and dense 40 (seeds 0 and 1), and the two averaged (``tinyasc ensemble``);
- ``real_audio`` (seeds 0-3): ``configs/real_audio.yaml`` (cosine decay, epoch by validation log loss);
- ``kd`` (seeds 0 and 1): ``configs/real_audio.yaml`` distilled from the four ``real_audio`` seeds as
  teachers (``crossval --teachers configs/real_audio.yaml --teacher-seeds 4``). Each fold's teachers are
  the four ``real_audio`` runs of that fold, which were trained without it: the script copies them into
  ``kd_seedS/teachers/fold_K/teacher_J`` instead of training the same configs again;
- int8 pairs: two runs stored int8 (``tinyasc compress --method int8-ptq``, calibrated on training
  clips) and averaged into one model of about the float16 baseline's bytes (baseline seeds 0 + 1; kd
  seeds 0 + 1);
- ``--families``: the zoo's family configs (``configs/<family>.yaml``) with the clip length of ESC-10,
  ``--family-epochs`` epochs and the epoch selected after epoch 10 (their own 126-250 epochs do not fit
  a CPU session), seed 0.

Prints accuracy and log loss per fold, mean ± std over the folds, stored bytes (the 2021 rule) and the
wall time of the entry in this call (0 when it was read back).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import time
from pathlib import Path

from tinyasc.config import load_config
from tinyasc.rundir import RunDir
from tinyasc.workflows.compress import compress_run
from tinyasc.workflows.crossval import crossval
from tinyasc.workflows.ensemble import make_ensemble

SMALL = "{filters: [8, 8, 16], dense: 40}"
TEACHERS = 4


def config(path: str, esc10: Path, cache: Path, *extra: str):
    return load_config(
        path,
        [
            "data.format=generic",
            f"data.csv={esc10 / 'meta.csv'}",
            f"data.root={esc10}",
            f"data.cache_dir={cache}",
            "frontend.duration=5",
            *extra,
        ],
    )


def folds_of(out: Path) -> list[dict]:
    return json.loads((out / "crossval.json").read_text())["folds"]


def row(name: str, folds: list[dict], nbytes: int, seconds: float) -> str:
    acc = [100 * f["accuracy"] for f in folds]
    loss = [f["logloss"] for f in folds]
    per = " | ".join(f"{a:.1f}% / {x:.3f}" for a, x in zip(acc, loss, strict=True))
    return (
        f"| {name} | {per} | **{statistics.fmean(acc):.1f}% ± {statistics.stdev(acc):.1f}** | "
        f"**{statistics.fmean(loss):.3f} ± {statistics.stdev(loss):.3f}** | {nbytes:,} | {seconds / 60:.1f} |"
    )


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--esc10", type=Path, default=Path("../shared/esc10"))
    p.add_argument("--out", type=Path, default=Path("/tmp/real_audio"))
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--families", nargs="*", default=[], help="configs/<family>.yaml to cross-validate")
    p.add_argument("--family-epochs", type=int, default=40)
    a = p.parse_args()
    esc10, out, cache = a.esc10.resolve(), a.out, a.out / "cache"
    print(f"load average {os.getloadavg()}; ESC-10 at {esc10}")
    seconds: dict[str, float] = {}
    runs: dict[str, Path] = {}

    def cv(name: str, cfg, teachers=None) -> None:
        t0 = time.time()
        crossval(cfg, out / name, progress=False, teachers=teachers)
        seconds[name], runs[name] = time.time() - t0, out / name

    def baseline(*extra: str):
        return config("configs/baseline.yaml", esc10, cache, f"train.epochs={a.epochs}", *extra)

    def real_audio(*extra: str):
        return config("configs/real_audio.yaml", esc10, cache, *extra)

    cv("baseline", baseline())
    cv("baseline_seed1", baseline("train.seed=1"))
    for s in (0, 1):
        cv(f"small_seed{s}", baseline(f"model.params={SMALL}", f"train.seed={s}"))
    for s in range(TEACHERS):
        cv(f"real_audio_seed{s}", real_audio(f"train.seed={s}"))
    teachers = [real_audio(f"train.seed={j}") for j in range(TEACHERS)]
    for s in (0, 1):
        name = f"kd_seed{s}"
        for f in folds_of(out / "baseline"):  # the teachers of each fold: the real_audio runs of that fold
            for j in range(TEACHERS):
                dest = out / name / "teachers" / f"fold_{f['fold']}" / f"teacher_{j}"
                if not dest.exists():
                    shutil.copytree(out / f"real_audio_seed{j}" / f"fold_{f['fold']}", dest)
        cv(name, real_audio(f"train.seed={s}"), teachers=teachers)

    def each_fold(name: str, make) -> None:
        """``make(fold, target)`` for every fold whose ``name/fold_K`` is not evaluated yet."""
        t0 = time.time()
        for f in folds_of(out / "baseline"):
            target = out / name / f"fold_{f['fold']}"
            if not RunDir(target).evaluation():
                target.parent.mkdir(parents=True, exist_ok=True)
                make(f["fold"], target)
        folds = []
        for f in folds_of(out / "baseline"):
            m = RunDir(out / name / f"fold_{f['fold']}").evaluation()["overall"]
            folds.append({"fold": f["fold"], "accuracy": m["accuracy"], "logloss": m["logloss"]})
        seconds[name], runs[name] = time.time() - t0, out / name
        (out / name / "crossval.json").write_text(json.dumps({"folds": folds}))

    def int8(name: str) -> None:  # every fold's run stored int8 (PTQ), evaluated on its held-out fold
        each_fold(
            f"{name}_int8",
            lambda fold, target: compress_run(
                out / name / f"fold_{fold}", target, "int8-ptq", resume=True, progress=False
            ),
        )

    def ensemble(name: str, members: list[str]) -> None:
        each_fold(
            name, lambda fold, target: make_ensemble([out / m / f"fold_{fold}" for m in members], target)
        )

    ensemble("small_pair", ["small_seed0", "small_seed1"])
    for name in ("baseline", "baseline_seed1", "kd_seed0", "kd_seed1"):
        int8(name)
    ensemble("baseline_int8_pair", ["baseline_int8", "baseline_seed1_int8"])
    ensemble("kd_int8_pair", ["kd_seed0_int8", "kd_seed1_int8"])
    for family in a.families:
        extra = (f"train.epochs={a.family_epochs}", "train.select_after=10")
        cv(f"family_{family}", config(f"configs/{family}.yaml", esc10, cache, *extra))

    header = " | ".join(f"fold {f['fold']}" for f in folds_of(out / "baseline"))
    print(f"\n| model | {header} | accuracy mean ± std | log loss mean ± std | bytes | minutes |")
    print("|---|" + "---|" * (len(folds_of(out / "baseline")) + 4))
    for name, where in runs.items():
        nbytes = RunDir(where / "fold_1").size()["nonzero_bytes"]
        print(row(name, folds_of(where), nbytes, seconds[name]))


if __name__ == "__main__":
    main()
