"""tinyasc crossval: one run per held-out fold, mean and spread, resumable."""

import json

import numpy as np
import soundfile as sf

from tinyasc.cli import main


def _dataset(root):
    rng = np.random.default_rng(0)
    rows = ["filename\tscene_label\tfold"]
    (root / "audio").mkdir(parents=True)
    t = np.arange(44100 * 2) / 44100
    for fold in (1, 2, 3):
        for label, freq in (("low", 300.0), ("high", 3000.0)):
            for k in range(4):
                name = f"audio/{fold}-{label}-{k}.wav"
                x = 0.3 * np.sin(2 * np.pi * freq * (1 + 0.05 * k) * t) + 0.05 * rng.standard_normal(len(t))
                sf.write(root / name, x.astype(np.float32), 44100)
                rows.append(f"{name}\t{label}\t{fold}")
    (root / "meta.csv").write_text("\n".join(rows) + "\n")
    return root


def _args(data, tmp_path, epochs, *extra):
    """crossval of the baseline on the 2-s dataset, ``epochs`` epochs, then ``extra``."""
    return [
        "crossval",
        "configs/baseline.yaml",
        "data.format=generic",
        f"data.csv={data / 'meta.csv'}",
        f"data.root={data}",
        f"data.cache_dir={tmp_path / 'cache'}",
        "frontend.duration=2",
        f"train.epochs={epochs}",
        "train.select_after=0",
        *extra,
    ]


def test_crossval_holds_out_each_fold_and_resumes(tmp_path, capsys):
    args = _args(_dataset(tmp_path / "data"), tmp_path, 2, "--out", str(tmp_path / "cv"), "--quiet")
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "mean ± std over 3 folds" in out
    summary = json.loads((tmp_path / "cv" / "crossval.json").read_text())
    assert [r["fold"] for r in summary["folds"]] == ["1", "2", "3"]
    for r in summary["folds"]:
        split = json.loads((tmp_path / "cv" / f"fold_{r['fold']}" / "splits.json").read_text())
        assert r["files"] == split["evaluate"] == 8  # the held-out fold alone
        assert split["method"] == "fold" and split["fold"] != r["fold"]  # validation: another fold
    assert abs(summary["accuracy_mean"] - np.mean([r["accuracy"] for r in summary["folds"]])) < 1e-12
    before = (tmp_path / "cv" / "fold_1" / "metrics.json").stat().st_mtime_ns
    assert main(args) == 0  # finished folds are read back, not trained again
    assert (tmp_path / "cv" / "fold_1" / "metrics.json").stat().st_mtime_ns == before


def test_crossval_distils_from_teachers_that_never_saw_the_held_out_fold(tmp_path, capsys):
    import yaml

    from tinyasc.distill.logits import load_logits

    data = _dataset(tmp_path / "data")
    teacher = tmp_path / "teacher.yaml"
    teacher.write_text(
        yaml.safe_dump({"model": {"name": "dcase2021_baseline"}, "train": {"epochs": 1, "select_after": 0}})
    )
    args = [
        *_args(data, tmp_path, 1),
        "--folds",
        "1",
        "3",
        "--teachers",
        str(teacher),
        "--teacher-seeds",
        "2",
        "--out",
        str(tmp_path / "cv"),
        "--quiet",
    ]
    assert main(args) == 0
    summary = json.loads((tmp_path / "cv" / "crossval.json").read_text())
    assert [t["seed"] for t in summary["teachers"]] == [0, 1]
    for fold in ("1", "3"):
        where = tmp_path / "cv" / "teachers" / f"fold_{fold}"
        names, _, _ = load_logits(where)
        assert len(names) == 16 and not any(n.startswith(f"audio/{fold}-") for n in names)
        for k in (0, 1):  # each teacher held the fold out too, with the clip length of the dataset
            split = json.loads((where / f"teacher_{k}" / "splits.json").read_text())
            assert split["evaluate"] == 8
            cfg = yaml.safe_load((where / f"teacher_{k}" / "config.yaml").read_text())
            assert cfg["data"]["evaluate_folds"] == [fold] and cfg["frontend"]["duration"] == 2
        student = yaml.safe_load((tmp_path / "cv" / f"fold_{fold}" / "config.yaml").read_text())
        assert student["train"]["kd_logits"] == str(where.resolve())
    bad = [*args[:-1], "train.kd_logits=elsewhere", "--quiet"]
    assert main(bad) == 2
    assert "teachers made on all folds would have seen the held-out fold" in capsys.readouterr().err
