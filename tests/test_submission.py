"""A submission round-trip on a small evaluation-layout corpus, and each broken rule caught."""

import io
import zipfile

import numpy as np
import pytest
import yaml

from tests.conftest import copy_run
from tinyasc.cli import main
from tinyasc.data.index import load_tau
from tinyasc.data.synth import write_evaluation_corpus
from tinyasc.data.tau import DEV_DEVICES, SCENES
from tinyasc.evaluate.report import format_output_csv
from tinyasc.evaluate.submission import check_label, check_meta, check_output, check_package, check_size

META = {
    "submission": {
        "name": "tinyasc baseline",
        "abbreviation": "tinyBL",
        "authors": [
            {
                "lastname": "Doe",
                "firstname": "Jane",
                "email": "jane@example.org",
                "corresponding": True,
                "affiliation": {"abbreviation": "TA", "institute": "Tiny Acoustics", "location": "Tampere"},
            },
            {
                "lastname": "Roe",
                "firstname": "Rick",
                "email": "rick@example.org",
                "affiliation": {"abbreviation": "TA", "institute": "Tiny Acoustics", "location": "Tampere"},
            },
        ],
    },
    "system": {
        "description": {"machine_learning_method": "CNN"},
        "source_code": "https://example.org/tinyasc",
    },
}
LABEL = "Doe_TA_task1a_1"


@pytest.fixture(scope="module")
def package(trained_run, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sub")
    run = copy_run(trained_run[0], tmp / "run")  # evaluate writes into it
    write_evaluation_corpus(tmp / "eval", per_class_device=1, duration=10.0, seed=1, workers=2)
    assert main(["evaluate", str(run)]) == 0
    (tmp / "meta.yaml").write_text(yaml.safe_dump(META))
    assert (
        main(
            [
                "submit",
                str(run),
                str(tmp / "eval"),
                "--label",
                LABEL,
                "--meta",
                str(tmp / "meta.yaml"),
                "-o",
                str(tmp / "out"),
            ]
        )
        == 0
    )
    return tmp


def test_round_trip_passes_the_checks(package, capsys):
    zip_path = package / "out" / "Doe_TA_task1.zip"
    with zipfile.ZipFile(zip_path) as z:
        names = sorted(z.namelist())
        assert names == [
            f"Doe_TA_task1/task1/{LABEL}/{LABEL}.meta.yaml",
            f"Doe_TA_task1/task1/{LABEL}/{LABEL}.output.csv",
        ]
        output = z.read(names[1]).decode()
        meta = yaml.safe_load(z.read(names[0]))
    lines = output.splitlines()
    assert len(lines) == 151 and lines[1].startswith("audio/")
    assert meta["system"]["complexity"]["total_parameters"] == 46246
    assert meta["system"]["complexity"]["model_size"] == pytest.approx(93004 / 1024, abs=0.05)
    assert set(meta["results"]["development_dataset"]["device_wise"]) == {
        "a",
        "b",
        "c",
        "s1",
        "s2",
        "s3",
        "s4",
        "s5",
        "s6",
    }
    assert meta["submission"]["label"] == LABEL
    assert main(["check-submission", str(zip_path), str(package / "eval")]) == 0
    assert "no errors found" in capsys.readouterr().out


def _output(package):
    with zipfile.ZipFile(package / "out" / "Doe_TA_task1.zip") as z:
        return z.read(f"Doe_TA_task1/task1/{LABEL}/{LABEL}.output.csv").decode()


def _expected(package):
    return [c.filename for c in load_tau(package / "eval").split("test")]


def test_each_output_rule_is_caught(package):
    out, expected = _output(package), _expected(package)
    assert check_output(out, expected) == []
    lines = out.splitlines()
    assert "missing" in check_output("\n".join(lines[:-1]), expected)[0]
    assert any("duplicate file" in e for e in check_output("\n".join(lines + [lines[1]]), expected))
    f = lines[1].split("\t")
    assert any(
        "unknown scene label" in e
        for e in check_output("\n".join([lines[0], "\t".join([f[0], "beach", *f[2:]]), *lines[2:]]), expected)
    )
    assert any(
        "not finite" in e
        for e in check_output("\n".join([lines[0], "\t".join([*f[:2], "nan", *f[3:]]), *lines[2:]]), expected)
    )
    bad = "\t".join([*f[:2], *(["0.5"] * 10)])
    assert any("sum to" in e for e in check_output("\n".join([lines[0], bad, *lines[2:]]), expected))
    assert any(
        "not in the evaluation set" in e
        for e in check_output(out.replace("audio/0.wav", "audio/9999.wav"), expected)
    )


def test_label_meta_and_size_rules():
    assert check_label(LABEL) == []
    for bad in ("Doe_TA_task1b_1", "Doe_TA_task1a_5", "Doe_task1a_1"):
        assert check_label(bad)
    assert check_size({"nonzero_bytes": 128001}) and not check_size({"nonzero_bytes": 128000})
    from tinyasc.evaluate.submission import build_meta

    metrics = {
        "overall": {"accuracy": 0.5, "logloss": 1.2},
        "class_wise": {c: {"accuracy": 0.5, "logloss": 1.0} for c in SCENES},
        "device_wise": {d: {"accuracy": 0.5, "logloss": 1.0} for d in DEV_DEVICES},
    }
    size = {"params": 10, "nonzero_params": 9, "nonzero_bytes": 20}
    meta = build_meta(META, LABEL, size, metrics, 44100, "float16")
    assert check_meta(meta, LABEL) == []
    two = yaml.safe_load(yaml.safe_dump(meta))
    two["submission"]["authors"][1]["corresponding"] = True
    assert any("exactly one author" in e for e in check_meta(two, LABEL))
    longer = yaml.safe_load(yaml.safe_dump(meta))
    longer["submission"]["abbreviation"] = "waytoolongname"
    assert any("longer than 10" in e for e in check_meta(longer, LABEL))
    gone = yaml.safe_load(yaml.safe_dump(meta))
    del gone["results"]["development_dataset"]["device_wise"]["s6"]
    assert any("device_wise.s6 is missing" in e for e in check_meta(gone, LABEL))
    assert any("differs from the package label" in e for e in check_meta(meta, "Doe_TA_task1a_2"))


def test_package_layout_rule(package):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr(f"task1/{LABEL}/{LABEL}.output.csv", _output(package))
    assert any(
        "not at <root>/task1/<label>/<file>" in e for e in check_package(buf.getvalue(), _expected(package))
    )


def test_submit_refuses_without_evaluation(trained_run, package, tmp_path, capsys):
    run, _ = trained_run
    (tmp_path / "run").mkdir()
    for name in ("config.yaml", "model_float16.pt", "size.json"):
        (tmp_path / "run" / name).write_bytes((run / name).read_bytes())
    args = [
        "submit",
        str(tmp_path / "run"),
        str(package / "eval"),
        "--label",
        LABEL,
        "--meta",
        str(package / "meta.yaml"),
        "-o",
        str(tmp_path / "o"),
    ]
    assert main(args) == 2
    assert "metrics.json: missing; run tinyasc evaluate" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    assert main(args[:4] + ["Doe_TA_task1a_9"] + args[5:]) == 2
    assert "expected <Lastname>_<Institute>_task1a_<1-4>" in capsys.readouterr().err


def test_probabilities_formatting_sums_to_one():
    p = np.random.default_rng(0).dirichlet(np.ones(10), 5)
    text = format_output_csv([f"audio/{i}.wav" for i in range(5)], p, tuple("abcdefghij"))
    for line in text.splitlines()[1:]:
        assert abs(sum(map(float, line.split("\t")[2:])) - 1) < 1e-6


def test_example_meta_file_builds_a_valid_meta():
    from pathlib import Path

    from tinyasc.evaluate.submission import build_meta

    user = yaml.safe_load(
        (Path(__file__).resolve().parents[1] / "configs/submission_meta.example.yaml").read_text()
    )
    metrics = {
        "overall": {"accuracy": 0.5, "logloss": 1.2},
        "class_wise": {c: {"accuracy": 0.5, "logloss": 1.0} for c in SCENES},
        "device_wise": {d: {"accuracy": 0.5, "logloss": 1.0} for d in DEV_DEVICES},
    }
    meta = build_meta(
        user, LABEL, {"params": 1, "nonzero_params": 1, "nonzero_bytes": 2}, metrics, 44100, "float16"
    )
    assert check_meta(meta, LABEL) == []
