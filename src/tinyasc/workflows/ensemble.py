"""``tinyasc ensemble RUN RUN ... --out NEW``: several trained runs averaged as one shipped model.

The budget ensembles of DCASE 2021 (rank 3, Yang_GT, shipped one): small models whose probabilities are
averaged, stored together in one model file (``model_ensemble.pt``) that counts every member as it
is stored; the size report lists the members and the 2021 limit applies to their sum. The new run
directory is an ordinary run: ``evaluate``, ``calibrate``, ``predict``, ``export`` and ``submit``
treat the ensemble as one model. Members must share classes and frontend (the same features feed all
of them); each keeps its own band normalisation.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from tinyasc import artifact
from tinyasc.data.index import DataError
from tinyasc.evaluate.run import evaluate_run
from tinyasc.rundir import RunDir


def make_ensemble(
    runs: list[str | Path], out: str | Path, evaluate: bool = True, progress: bool = False
) -> dict:
    """Average the shipped models of ``runs`` into the new run ``out``; returns its record."""
    sources = [RunDir(r) for r in runs]
    target = RunDir(out)
    if target.path.exists():
        raise DataError(f"{target.path}: exists already; choose a new folder")
    for src in sources:
        if not src.size():
            raise DataError(f"{src.path}: not a finished tinyasc run (no {src.SIZE_JSON})")
    members = [artifact.load(src.shipped_model_path) for src in sources]
    try:
        stored = artifact.new_ensemble(members, [str(s.path) for s in sources])
    except artifact.ModelFileError as e:
        raise DataError(str(e)) from None
    staging = target.staging()
    shutil.rmtree(staging.path, ignore_errors=True)
    with staging.lock("tinyasc ensemble"):
        staging.save_config(sources[0].config())  # the data and frontend every member was trained on
        staging.ship_stored(stored)
        record = {
            "members": [
                {"run": str(s.path.resolve()), "model": m["model_name"], "storage": m["storage"]}
                for s, m in zip(sources, members, strict=True)
            ],
            "averaging": "mean of the members' probabilities",
            "size": staging.size(),
        }
    if evaluate:
        m = evaluate_run(staging.path, progress=progress)
        record["evaluation"] = {"accuracy": m["overall"]["accuracy"], "logloss": m["overall"]["logloss"]}
    staging.save_ensemble_record(record)
    staging.path.rename(target.path)
    return record
