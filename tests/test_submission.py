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
from tinyasc.evaluate.submission import (
    Findings,
    check_label,
    check_meta,
    check_output,
    check_package,
    check_size,
)

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
    (tmp / "report.pdf").write_bytes(b"%PDF-1.4\n%%EOF\n")  # stands in for the technical report
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
                "--report",
                str(tmp / "report.pdf"),
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
            "Doe_TA_task1/Doe_TA_task1_technical_report.pdf",
            f"Doe_TA_task1/task1/{LABEL}/{LABEL}.meta.yaml",
            f"Doe_TA_task1/task1/{LABEL}/{LABEL}.output.csv",
        ]
        output = z.read(names[2]).decode()
        meta = yaml.safe_load(z.read(names[1]))
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
    assert check_output(out, expected) == Findings()
    lines = out.splitlines()
    assert "missing" in check_output("\n".join(lines[:-1]), expected).errors[0]
    assert any("duplicate file" in e for e in check_output("\n".join(lines + [lines[1]]), expected).errors)
    f = lines[1].split("\t")
    assert any(
        "unknown scene label" in e
        for e in check_output(
            "\n".join([lines[0], "\t".join([f[0], "beach", *f[2:]]), *lines[2:]]), expected
        ).errors
    )
    nan = check_output("\n".join([lines[0], "\t".join([*f[:2], "nan", *f[3:]]), *lines[2:]]), expected)
    assert nan.errors == [] and any("not finite" in w for w in nan.warnings)  # the validator takes NaN
    bad = "\t".join([*f[:2], *(["0.5"] * 10)])
    sums = check_output("\n".join([lines[0], bad, *lines[2:]]), expected)
    assert sums.errors == [] and any("sum to" in w for w in sums.warnings)  # not checked by the validator
    assert any(
        "not in the evaluation set" in e
        for e in check_output(out.replace("audio/0.wav", "audio/9999.wav"), expected).errors
    )
    extra = "\n".join(ln + "\t0" for ln in lines)  # a 13th column: the validator rejects every row
    assert any("13 fields, expected 12" in e for e in check_output(extra, expected).errors)
    header = "\n".join([lines[0].replace("airport", "airports"), *lines[1:]])
    assert "header lacks ['airport']" in check_output(header, expected).errors[0]
    text = check_output("\n".join([lines[0], "\t".join([*f[:2], "high", *f[3:]]), *lines[2:]]), expected)
    assert any("not a number" in e for e in text.errors)


def test_label_meta_and_size_rules():
    assert check_label(LABEL) == []
    for bad in ("Doe_TA_task1b_1", "Doe_TA_task1a_5", "Doe_task1a_1"):
        assert check_label(bad)
    assert check_size({"nonzero_bytes": 128001}) and not check_size({"nonzero_bytes": 128000})
    # from 2022 the run's rules decide: 2021's non-zero bytes no longer count
    over = {"rules": "dcase2022", "reasons": ["200,000 parameters counted, over the limit of 128,000"]}
    assert check_size({"nonzero_bytes": 64_000, "rules": over}) == [f"dcase2022: {over['reasons'][0]}"]
    assert check_size({"nonzero_bytes": 500_000, "rules": {"rules": "dcase2024", "reasons": []}}) == []
    from tinyasc.evaluate.submission import build_meta

    metrics = {
        "overall": {"accuracy": 0.5, "logloss": 1.2},
        "class_wise": {c: {"accuracy": 0.5, "logloss": 1.0} for c in SCENES},
        "device_wise": {d: {"accuracy": 0.5, "logloss": 1.0} for d in DEV_DEVICES},
    }
    size = {"params": 10, "nonzero_params": 9, "nonzero_bytes": 20}
    meta = build_meta(META, LABEL, size, metrics, 44100, "float16")
    assert check_meta(meta, LABEL) == Findings()
    two = yaml.safe_load(yaml.safe_dump(meta))
    two["submission"]["authors"][1]["corresponding"] = True
    assert any("exactly one author" in e for e in check_meta(two, LABEL).errors)
    longer = yaml.safe_load(yaml.safe_dump(meta))
    longer["submission"]["abbreviation"] = "waytoolongname"
    assert any("longer than 10" in e for e in check_meta(longer, LABEL).errors)
    gone = yaml.safe_load(yaml.safe_dump(meta))
    del gone["results"]["development_dataset"]["device_wise"]["s6"]
    assert any("device_wise.s6 is missing" in e for e in check_meta(gone, LABEL).errors)
    assert any("differs from the package label" in e for e in check_meta(meta, "Doe_TA_task1a_2").errors)
    words = yaml.safe_load(yaml.safe_dump(meta))
    words["system"]["complexity"]["total_parameters"] = "about 46k"
    assert any("total_parameters 'about 46k' is not an integer" in e for e in check_meta(words, LABEL).errors)
    numeric = yaml.safe_load(yaml.safe_dump(meta))
    numeric["results"]["development_dataset"]["overall"]["logloss"] = "low"
    assert any("overall.logloss 'low' is not a number" in e for e in check_meta(numeric, LABEL).errors)
    lean = yaml.safe_load(yaml.safe_dump(meta))
    del lean["system"]["description"]["complexity_management"]
    del lean["system"]["complexity"]["model_size"]
    found = check_meta(lean, LABEL)
    assert found.errors == [] and len(found.warnings) == 2  # accepted by the organisers, flagged by us


def test_package_layout_rule(package):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr(f"task1/{LABEL}/{LABEL}.output.csv", _output(package))
    assert any(
        "not at <root>/task1/<label>/<file>" in e
        for e in check_package(buf.getvalue(), _expected(package)).errors
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
    assert check_meta(meta, LABEL) == Findings()


def _zip(members: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, text in members.items():
            z.writestr(name, text)
    return buf.getvalue()


def test_check_submission_defaults_to_the_real_2021_list_and_separates_warnings(package, tmp_path, capsys):
    from tinyasc.data.tau import evaluation_2021_files

    names = evaluation_2021_files()
    assert len(names) == 7920 and names[0] == "audio/0.wav" and names[-1] == "audio/7919.wav"
    p = np.full((len(names), 10), 0.1)
    output = format_output_csv(names, p, SCENES)
    meta = yaml.safe_load(
        zipfile.ZipFile(package / "out" / "Doe_TA_task1.zip").read(
            f"Doe_TA_task1/task1/{LABEL}/{LABEL}.meta.yaml"
        )
    )
    del meta["system"]["description"]["complexity_management"]
    root = f"Doe_TA_task1/task1/{LABEL}/{LABEL}"
    good = tmp_path / "good.zip"
    good.write_bytes(_zip({f"{root}.output.csv": output, f"{root}.meta.yaml": yaml.safe_dump(meta)}))
    assert main(["check-submission", str(good)]) == 0  # no eval root: the 7,920 official names
    out = capsys.readouterr().out
    assert (
        "0 error(s)" in out and "warning (tinyasc's stricter rule" in out and "complexity_management" in out
    )
    short = tmp_path / "short.zip"
    short.write_bytes(
        _zip(
            {
                f"{root}.output.csv": "\n".join(output.splitlines()[:-1]),
                f"{root}.meta.yaml": yaml.safe_dump(meta),
            }
        )
    )
    assert main(["check-submission", str(short)]) == 1
    assert "error: output: 7919 unique files, expected 7920" in capsys.readouterr().out


def test_a_broken_meta_yaml_is_one_line_not_a_traceback(package, tmp_path, capsys):
    root = f"Doe_TA_task1/task1/{LABEL}/{LABEL}"
    bad = tmp_path / "bad.zip"
    bad.write_bytes(
        _zip({f"{root}.output.csv": _output(package), f"{root}.meta.yaml": "submission: [unclosed\n"})
    )
    assert main(["check-submission", str(bad), str(package / "eval")]) == 1
    assert "meta.yaml: not valid YAML at line 2" in capsys.readouterr().out
    tagged = tmp_path / "tagged.yaml"
    tagged.write_text("submission: !!python/object/apply:os.system ['true']\n")
    args = ["submit", str(package / "run"), str(package / "eval"), "--label", LABEL, "--meta", str(tagged)]
    assert main([*args, "-o", str(tmp_path / "o")]) == 2
    assert "tagged.yaml: not valid YAML" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_submit_refuses_results_of_another_temperature(package, tmp_path, capsys):
    from tests.conftest import copy_run

    run = copy_run(package / "run", tmp_path / "run")
    (run / "calibration.json").write_text('{"temperature": 1.5}')
    args = ["submit", str(run), str(package / "eval"), "--label", LABEL, "--meta", str(package / "meta.yaml")]
    assert main([*args, "-o", str(tmp_path / "o")]) == 2
    assert (
        "evaluated at temperature 1.0000 but the run is now calibrated at 1.5000" in capsys.readouterr().err
    )
