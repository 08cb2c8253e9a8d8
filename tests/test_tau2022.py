"""The 2022 1-s layout, the 2024 subsets, training under the 2022 rules, and 2025 device heads."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from tests.conftest import REAL_SETUP
from tinyasc import artifact
from tinyasc.cli import main
from tinyasc.data.index import DataError, load_tau
from tinyasc.data.tau import parse_filename
from tinyasc.data.tau2022 import cut_2022, snippet_name, subset_files, write_subsets
from tinyasc.evaluate.infer import predict_files
from tinyasc.evaluate.predict import feature_logits
from tinyasc.rundir import RunDir
from tinyasc.workflows.device_heads import DeviceHeadsError, head_parameter_names


@pytest.fixture(scope="module")
def corpus2022(tiny_corpus, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tau2022") / "TAU-urban-acoustic-scenes-2022-mobile-development"
    cut_2022(tiny_corpus, out, workers=2)
    return out


def test_names_of_the_2022_layout():
    assert snippet_name("audio/airport-barcelona-0-0-a.wav", 3) == "audio/airport-barcelona-0-0-3-a.wav"
    n = parse_filename("audio/street_traffic-lyon-1161-44104-9-s3.wav")
    assert (n.segment, n.snippet, n.device, n.identifier) == ("44104", "9", "s3", "lyon-1161")
    assert n.recording == "street_traffic-lyon-1161-44104-s3"
    assert parse_filename("audio/airport-barcelona-0-0-a.wav").snippet is None


def test_cut_writes_the_organisers_layout(tiny_corpus, corpus2022):
    src = load_tau(tiny_corpus)
    idx = load_tau(corpus2022)
    assert len(idx.split("train")) == 10 * len(src.split("train"))
    assert len(idx.split("evaluate")) == 10 * len(src.split("evaluate"))
    first = src.split("train")[0]
    y, sr = sf.read(tiny_corpus / first.filename, dtype="float64")
    for k in (0, 9):
        piece, sr2 = sf.read(corpus2022 / snippet_name(first.filename, k), dtype="float64")
        assert sr2 == sr and np.array_equal(piece, y[k * sr : (k + 1) * sr])  # exact samples
    assert sf.info(str(corpus2022 / snippet_name(first.filename, 0))).subtype == "PCM_24"
    meta = (corpus2022 / "meta.csv").read_text().splitlines()
    assert meta[0] == "filename\tscene_label\tidentifier\tsource_label" and len(meta) == 1 + len(idx.clips)
    name = parse_filename(first.filename)
    assert f"{snippet_name(first.filename, 0)}\t{name.scene}\t{name.identifier}\t{name.device}" in meta
    test = (corpus2022 / "evaluation_setup" / "fold1_test.csv").read_text().splitlines()
    assert test[0] == "filename" and len(test) == 1 + len(idx.split("evaluate"))
    # the snippets of one file are one recording: a fraction split keeps them on one side
    assert len({c.recording for c in idx.split("train")}) == len(src.split("train"))


def test_cut_resumes_and_refuses_short_files(tiny_corpus, corpus2022, tmp_path):
    victim = corpus2022 / snippet_name(load_tau(tiny_corpus).split("train")[0].filename, 4)
    before = victim.read_bytes()
    victim.unlink()
    cut_2022(tiny_corpus, corpus2022, workers=1)  # writes only what is missing
    assert victim.read_bytes() == before
    short = tmp_path / "short"
    (short / "evaluation_setup").mkdir(parents=True)
    (short / "audio").mkdir()
    sf.write(str(short / "audio" / "bus-lyon-1-1-a.wav"), np.zeros(1000), 44100)
    (short / "evaluation_setup" / "fold1_train.csv").write_text(
        "filename\tscene_label\naudio/bus-lyon-1-1-a.wav\tbus\n"
    )
    with pytest.raises(DataError, match="bus-lyon-1-1-a.wav: 1000 samples, shorter than one 1-s snippet"):
        cut_2022(short, tmp_path / "out", workers=1)


def test_subsets_nest_keep_recordings_whole_and_keep_proportions(corpus2022):
    train = [c.filename for c in load_tau(corpus2022).split("train")]  # 60 recordings x 10 snippets
    sets = {p: set(subset_files(train, p, seed=0)) for p in (5, 10, 25, 50, 100)}
    assert [len(sets[p]) for p in (5, 10, 25, 50, 100)] == [30, 60, 150, 300, 600]
    assert sets[5] <= sets[10] <= sets[25] <= sets[50] <= sets[100] == set(train)
    for s in sets.values():  # whole recordings: ten snippets each
        recs = [parse_filename(f).recording for f in s]
        assert all(recs.count(r) == 10 for r in set(recs))
    half = [parse_filename(f) for f in sets[50]]  # every scene and device at half of its share
    assert {sum(n.scene == sc for n in half) for sc in {n.scene for n in half}} == {30}
    assert {sum(n.device == d for n in half) for d in {n.device for n in half}} <= {40, 50, 60}
    assert subset_files(train, 25, seed=1) != list(sorted(sets[25]))  # the seed matters


def test_train_under_the_2022_rules_with_a_subset(corpus2022, tmp_path):
    assert main(["subsets", str(corpus2022)]) == 0
    written = write_subsets(corpus2022, (50,))
    assert written == {50: 300}
    run = tmp_path / "run"
    args = ["train", "configs/dcase2022_baseline.yaml", f"data.root={corpus2022}", "data.subset=50"]
    args += [
        f"data.cache_dir={tmp_path / 'cache'}",
        "train.epochs=1",
        "train.select_after=0",
        "--run-dir",
        str(run),
    ]
    assert main([*args, "--quiet"]) == 0
    splits = json.loads((run / "splits.json").read_text())
    assert splits["of"] == 300 and splits["train"] + splits["validation"] == 300
    v = RunDir(run).size()["rules"]
    assert v["rules"] == "dcase2022" and v["passes"] and v["counted"] == 46_118 and v["unit"] == "parameters"
    assert v["macs"] == 29_271_638 and v["clip_seconds"] == 1.0


def test_a_missing_subset_file_is_named(tiny_corpus, tmp_path):
    args = ["train", "configs/baseline.yaml", f"data.root={tiny_corpus}", "data.subset=5"]
    args += [f"data.cache_dir={tmp_path}", "train.epochs=1", "--run-dir", str(tmp_path / "r"), "--quiet"]
    assert main(args) == 2


def test_pruning_is_refused_where_every_parameter_counts(run_copy, tmp_path, capsys):
    run, _ = run_copy
    out = tmp_path / "pruned"
    assert (
        main(
            [
                "compress",
                str(run),
                "--method",
                "prune",
                "--target",
                "0.5",
                "--out",
                str(out),
                "--rules",
                "dcase2024",
            ]
        )
        == 2
    )
    assert "pruned zeros still count" in capsys.readouterr().err and not out.exists()


@pytest.fixture(scope="module")
def heads_run(corpus2022, tmp_path_factory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("heads")
    args = ["train", "configs/dcase2022_baseline.yaml", f"data.root={corpus2022}", "quantize=float16"]
    args += ["rules=dcase2025", f"data.cache_dir={tmp / 'cache'}", "train.epochs=1", "train.select_after=0"]
    assert main([*args, "--run-dir", str(tmp / "shared"), "--quiet"]) == 0
    assert (
        main(["device-heads", str(tmp / "shared"), "--out", str(tmp / "heads"), "--epochs", "2", "--quiet"])
        == 0
    )
    return tmp / "shared", tmp / "heads"


def test_device_heads_are_chosen_by_device_and_counted(heads_run, corpus2022):
    shared, heads = heads_run
    lm = RunDir(heads).load_model()
    assert isinstance(lm.model, artifact.DeviceHeads)
    assert sorted(lm.model.heads) == ["a", "b", "c", "s1", "s2", "s3"]
    names = sorted(lm.model.shared)
    assert names == ["dense2.bias", "dense2.weight"]  # the baseline's last linear layer
    assert not torch.equal(lm.model.heads["a"]["dense2.weight"], lm.model.heads["s1"]["dense2.weight"])
    # the size report and the 2025 verdict count the shared model and every head
    size = RunDir(heads).size()
    base = RunDir(shared).size()
    assert size["rules"]["params"] == base["rules"]["params"] + 6 * 1010
    assert any(r["name"] == "head[s3].dense2" for r in size["layers"])
    # evaluation picks each clip's head: compare one device's logits with the head loaded by hand
    idx = load_tau(corpus2022)
    feats = np.random.default_rng(0).standard_normal((4, 40, 51)).astype(np.float16)
    rows = np.arange(4)
    got = feature_logits(lm, feats, rows, devices=["b", "b", "s9", ""])
    lm.model.select("b")
    want_b = feature_logits(lm, feats, rows[:2])
    lm.model.select("")
    want_shared = feature_logits(lm, feats, rows[2:])
    assert np.allclose(got[:2], want_b) and np.allclose(got[2:], want_shared)  # unknown devices: shared
    assert not np.allclose(want_b, feature_logits(lm, feats, rows[:2]))
    # files: the device comes from the TAU name
    clip = next(c for c in idx.split("evaluate") if c.device == "b")
    [res] = predict_files(lm, [idx.path(clip)], workers=1)
    lm.model.select("b")
    [res_b] = predict_files(lm, [idx.path(clip)], workers=1)  # select is reset per batch: same result
    assert np.allclose(res.probs, res_b.probs)
    record = json.loads((heads / "device_heads.json").read_text())
    assert record["devices"] == ["a", "b", "c", "s1", "s2", "s3"] and "evaluation" in record


def test_device_heads_refuse_what_they_cannot_do(heads_run, tmp_path, capsys):
    shared, heads = heads_run
    assert main(["device-heads", str(shared), "--out", str(heads), "--quiet"]) == 2  # exists
    assert (
        main(["device-heads", str(shared), "--out", str(tmp_path / "x"), "--devices", "s6", "--quiet"]) == 2
    )
    assert "--devices s6: no training clips" in capsys.readouterr().err
    with pytest.raises(DeviceHeadsError, match="no layer with parameters runs after dense2"):
        head_parameter_names(
            artifact.float_architecture(artifact.load(RunDir(shared).float_model_path)), "after"
        )


def test_subsets_of_the_real_fold1_training_list():
    # the real fold1_train.csv (13,962 files) as the 2022 layout names it: 139,620 snippets
    rows = (REAL_SETUP / "fold1_train.csv").read_text().splitlines()[1:]
    files = [snippet_name(r.split("\t")[0], k) for r in rows for k in range(10)]
    sizes = [len(subset_files(files, p)) for p in (5, 10, 25, 50, 100)]
    assert sizes == [6_980, 13_960, 34_910, 69_810, 139_620]
    # the organisers' split25.csv holds 34,900 snippets, 25,520 of device A (as public code reading the
    # released file states): ours is within 0.1% in size and 0.5% in device A's count
    a = sum(parse_filename(f).device == "a" for f in subset_files(files, 25))
    assert abs(sizes[2] - 34_900) <= 35 and abs(a - 25_520) <= 130
