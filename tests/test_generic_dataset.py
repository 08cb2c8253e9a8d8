"""A user's own labelled dataset goes through the same train / evaluate path as TAU."""

import json

from tinyasc.cli import main
from tinyasc.data.index import load_tau

GROUP = {
    "bus": "vehicle",
    "metro": "vehicle",
    "tram": "vehicle",
    "airport": "indoor",
    "metro_station": "indoor",
    "shopping_mall": "indoor",
}


def test_generic_csv_trains_and_evaluates(tiny_corpus, tmp_path, capsys):
    ix = load_tau(tiny_corpus)
    rows = [
        f"{c.filename}\t{GROUP.get(c.scene, 'outdoor')}\t{1 if c.split == 'train' else 2}\t{c.device}"
        for c in ix.clips
    ]
    csv = tmp_path / "labels.csv"
    csv.write_text("filename\tscene_label\tfold\tdevice\n" + "\n".join(rows) + "\n")
    assert main(["index", str(tiny_corpus), "--csv", str(csv), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["kind"] == "generic" and summary["splits"]["evaluate"]["files"] == 90

    run = tmp_path / "run"
    args = [
        "train",
        "configs/baseline.yaml",
        "data.format=generic",
        f"data.csv={csv}",
        f"data.root={tiny_corpus}",
        "data.classes=[vehicle, indoor, outdoor]",
        "data.evaluate_folds=[2]",
        f"data.cache_dir={tmp_path / 'c'}",
        "train.epochs=1",
        "train.select_after=0",
        "--run-dir",
        str(run),
        "--quiet",
        "--evaluate",
    ]
    assert main(args) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert list(metrics["class_wise"]) == ["vehicle", "indoor", "outdoor"]
    assert metrics["overall"]["files"] == 90
    header = (run / "output.csv").read_text().splitlines()[0].split("\t")
    assert header == ["filename", "scene_label", "vehicle", "indoor", "outdoor"]
