import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tinyasc.cli import main
from tinyasc.data.index import DataError, load_generic, load_tau, validation_split


def test_real_split_counts(real_setup_root):
    s = load_tau(real_setup_root, check_audio=False).summary()
    train, ev = s["splits"]["train"], s["splits"]["evaluate"]
    assert train["files"] == 13962 and ev["files"] == 2968
    assert train["devices"] == {"a": 10215, "b": 749, "c": 748, "s1": 750, "s2": 750, "s3": 750}
    assert ev["devices"] == {"a": 330, "b": 329, "c": 329, **{f"s{i}": 330 for i in range(1, 7)}}
    assert train["locations"] == 365 and ev["locations"] == 146
    assert s["shared_locations"] == []


def test_index_cli_json_no_audio(real_setup_root, capsys):
    import json

    assert main(["index", str(real_setup_root), "--no-audio", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["splits"]["train"]["files"] == 13962
    assert out["validation"]["fraction"] == 0.3 and out["validation"]["seed"] == 0
    assert sorted(out["validation"]["files"]) == sorted(OFFICIAL_VALIDATION)


# The 4,538 validation files dcase_util 0.2.20 makes of the real fold1_train.csv (the baseline's call:
# validation_files_balanced, identifier_two_level_hierarchy, validation_amount 0.3, seed 0).
OFFICIAL_VALIDATION = (
    gzip.decompress((Path(__file__).parent / "data" / "fold1_validation_dcase_util.txt.gz").read_bytes())
    .decode()
    .split()
)


def test_validation_split_is_exactly_dcase_utils(real_setup_root):
    train = load_tau(real_setup_root, check_audio=False).split("train")
    _, val = validation_split(train, 0.3, seed=0)
    assert len(OFFICIAL_VALIDATION) == 4538
    assert sorted(c.filename for c in val) == sorted(OFFICIAL_VALIDATION)


def _write_setup(root, train_rows, evaluate_rows=("audio/airport-lisbon-1-1-a.wav\tairport",)):
    (root / "evaluation_setup").mkdir(parents=True, exist_ok=True)
    (root / "evaluation_setup" / "fold1_train.csv").write_text(
        "filename\tscene_label\n" + "\n".join(train_rows) + "\n"
    )
    (root / "evaluation_setup" / "fold1_evaluate.csv").write_text(
        "filename\tscene_label\n" + "\n".join(evaluate_rows) + "\n"
    )


@pytest.mark.parametrize(
    "rows, needle, line",
    [
        (["audio/airport-lisbon-2-1-a.wav\tbeach"], "unknown scene 'beach'", 2),
        (["audio/airport-lisbon-2-1-q.wav\tairport"], "unknown device 'q'", 2),
        (["audio/airport-lisbon-2-1-a.wav"], "malformed row", 2),
        (
            ["audio/airport-lisbon-2-1-a.wav\tairport", "audio/airport-lisbon-2-1-a.wav\tairport"],
            "duplicate file",
            3,
        ),
        (["audio/airport-lisbon-2-1-a.wav\tbus"], "disagrees with file name", 2),
    ],
)
def test_bad_rows_name_file_and_line(tmp_path, rows, needle, line):
    _write_setup(tmp_path, rows)
    with pytest.raises(DataError) as e:
        load_tau(tmp_path, check_audio=False)
    assert needle in str(e.value)
    assert f"fold1_train.csv:{line}" in str(e.value)


def test_missing_audio_lists_first_and_counts_rest(tmp_path):
    rows = [f"audio/airport-lisbon-2-{i}-a.wav\tairport" for i in range(8)]
    _write_setup(tmp_path, rows)
    with pytest.raises(DataError) as e:
        load_tau(tmp_path)
    msg = str(e.value)
    assert "9 listed audio file(s) missing" in msg and "and 4 more" in msg
    assert "airport-lisbon-2-0-a.wav" in msg


def test_unreadable_audio_is_named(tmp_path):
    _write_setup(tmp_path, ["audio/airport-lisbon-2-1-a.wav\tairport"])
    (tmp_path / "audio").mkdir()
    sf.write(tmp_path / "audio/airport-lisbon-1-1-a.wav", np.zeros(100), 44100)
    (tmp_path / "audio/airport-lisbon-2-1-a.wav").write_bytes(b"not a wav file at all")
    with pytest.raises(DataError, match=r"airport-lisbon-2-1-a\.wav: not readable audio"):
        load_tau(tmp_path)


def test_meta_csv_must_agree_with_names(tmp_path):
    _write_setup(tmp_path, ["audio/airport-lisbon-2-1-a.wav\tairport"])
    (tmp_path / "meta.csv").write_text(
        "filename\tscene_label\tidentifier\tsource_label\naudio/airport-lisbon-2-1-a.wav\tairport\tlisbon-3\ta\n"
    )
    with pytest.raises(DataError, match=r"meta.csv:2: identifier/source_label"):
        load_tau(tmp_path, check_audio=False)


def test_cli_reports_bad_input_with_exit_2(tmp_path, capsys):
    _write_setup(tmp_path, ["audio/airport-lisbon-2-1-a.wav\tbeach"])
    assert main(["index", str(tmp_path), "--no-audio"]) == 2
    assert "unknown scene 'beach'" in capsys.readouterr().err


def test_validation_split_like_baseline(real_setup_root):
    train = load_tau(real_setup_root, check_audio=False).split("train")
    tr, va = validation_split(train, 0.3, seed=0)
    assert len(tr) + len(va) == len(train)
    assert not {c.identifier for c in tr} & {c.identifier for c in va}  # location-disjoint
    assert 0.25 < len(va) / len(train) < 0.36
    # city-balanced: per scene and city with >= 2 locations, ceil(0.3 n) locations go to validation
    scene, city = "park", "helsinki"
    locs = {c.identifier for c in train if c.scene == scene and c.city == city}
    vlocs = {c.identifier for c in va if c.scene == scene and c.city == city}
    assert len(vlocs) == int(np.ceil(0.3 * len(locs)))
    tr2, va2 = validation_split(train, 0.3, seed=0)
    assert [c.filename for c in va2] == [c.filename for c in va]  # seeded
    _, va3 = validation_split(train, 0.3, seed=1)
    assert {c.filename for c in va3} != {c.filename for c in va}


def test_generic_dataset_with_folds_and_classes(tmp_path):
    (tmp_path / "wav").mkdir()
    rows = []
    for i in range(6):
        sf.write(tmp_path / "wav" / f"{i}.flac", np.zeros(1000), 16000)
        rows.append(f"wav/{i}.flac\t{'dog' if i % 2 else 'cat'}\t{1 + i % 3}\tphone")
    (tmp_path / "labels.csv").write_text("filename\tscene_label\tfold\tdevice\n" + "\n".join(rows) + "\n")
    ix = load_generic(tmp_path / "labels.csv", classes=["dog", "cat"], evaluate_folds=["3"])
    assert ix.classes == ("dog", "cat")
    assert sorted(c.filename for c in ix.split("evaluate")) == ["wav/2.flac", "wav/5.flac"]
    assert {c.device for c in ix.clips} == {"phone"}
    with pytest.raises(DataError, match="unknown scene 'cat'"):
        load_generic(tmp_path / "labels.csv", classes=["dog"])


def test_synth_corpus_loads_without_special_case(tiny_corpus, tmp_path):
    ix = load_tau(tiny_corpus)
    s = ix.summary()
    assert s["splits"]["train"]["files"] == 60 and s["splits"]["evaluate"]["files"] == 90
    assert "s4" not in s["splits"]["train"]["devices"]
    assert set(s["splits"]["evaluate"]["devices"]) == {"a", "b", "c", "s1", "s2", "s3", "s4", "s5", "s6"}
    assert s["shared_locations"] == []
    # removing one file is caught
    copy = tmp_path / "copy"
    shutil.copytree(tiny_corpus, copy)
    victim = ix.split("train")[0].filename
    (copy / victim).unlink()
    with pytest.raises(DataError, match="1 listed audio file"):
        load_tau(copy)


def test_an_audio_check_that_passed_is_remembered_until_a_file_changes(tiny_corpus, tmp_path):
    import shutil

    root = tmp_path / "root"
    shutil.copytree(tiny_corpus, root)
    memo = tmp_path / "memo"
    load_tau(root, memo_dir=memo)
    assert len(list(memo.glob("audio-checked-*.json"))) == 1
    load_tau(root, memo_dir=memo)  # the same files: no new entry, headers not read
    assert len(list(memo.glob("audio-checked-*.json"))) == 1
    victim = root / load_tau(root, check_audio=False).clips[0].filename
    victim.write_bytes(b"not audio at all")  # size and time change: the memo no longer applies
    with pytest.raises(DataError, match="not readable audio"):
        load_tau(root, memo_dir=memo)
