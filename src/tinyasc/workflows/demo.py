"""``tinyasc demo``: synthetic corpus -> DCASE 2021 baseline -> float16 -> evaluation, on a CPU.

The default (measured in the README) fits in 10 minutes on 2 CPU cores; ``--quick`` is a smoke test
of about a minute that exercises every step on a tiny corpus.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from tinyasc.config import load_config
from tinyasc.data.synth import SynthSpec, write_corpus
from tinyasc.evaluate.run import evaluate_run
from tinyasc.rundir import RunDir
from tinyasc.train.run import fit

# (files per class and device, epochs, select_after): the default is sized to learn well within
# 10 minutes on 2 cores; quick proves the pipeline runs and learns (above chance) in under a minute.
DEFAULT = {"per_class_device": 20, "epochs": 20, "select_after": 5}
QUICK = {"per_class_device": 2, "epochs": 15, "select_after": 0}


def run_demo(workdir: Path, quick: bool = False, workers: int = 2) -> int:
    plan = QUICK if quick else DEFAULT
    t0 = time.time()
    corpus = workdir / ("corpus_quick" if quick else "corpus")
    run_dir = workdir / ("run_quick" if quick else "run")
    spec = SynthSpec(per_class_device=plan["per_class_device"], seed=0)
    print(
        f"[1/4] synthetic corpus in {corpus} ({plan['per_class_device']} files per class and device)",
        flush=True,
    )
    counts = write_corpus(corpus, spec, workers=workers, progress=True)
    print(f"      {counts['train']} train + {counts['evaluate']} evaluate files", flush=True)
    if run_dir.exists():
        shutil.rmtree(run_dir)  # a demo always trains afresh; the corpus and feature cache are reused
    cfg = load_config(
        None,
        [
            f"data.root={corpus}",
            f"data.cache_dir={workdir / 'cache'}",
            f"data.workers={workers}",
            f"train.epochs={plan['epochs']}",
            f"train.select_after={plan['select_after']}",
        ],
    )
    print(f"[2/4] training the DCASE 2021 baseline for {plan['epochs']} epochs", flush=True)
    res = fit(cfg, run_dir, progress=True)
    size = RunDir(run_dir).size()
    print(
        f"[3/4] float16 model: {size['bytes']:,} bytes ({size['nonzero_bytes']:,} non-zero), "
        f"{'fits' if size['fits'] else 'exceeds'} the 128,000-byte limit",
        flush=True,
    )
    print("[4/4] evaluating on fold1_evaluate", flush=True)
    m = evaluate_run(run_dir)
    o = m["overall"]
    print()
    print(
        f"accuracy {100 * o['accuracy']:.1f}% (chance 10%), log loss {o['logloss']:.3f} "
        f"on {o['files']} files; best epoch {res['best']['epoch']}"
    )
    for g, s in m["group_wise"].items():
        print(f"  {g:7s} devices: accuracy {100 * s['accuracy']:.1f}%, log loss {s['logloss']:.3f}")
    print(f"report: {RunDir(run_dir).report_paths['report']}")
    print(f"demo finished in {time.time() - t0:.0f} s")
    return 0
