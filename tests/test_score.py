import numpy as np
import pytest

from tinyasc.cli import main
from tinyasc.data.index import DataError
from tinyasc.data.tau import SCENES
from tinyasc.evaluate.report import format_output_csv
from tinyasc.evaluate.run import score


def _files(tmp_path, probs_rows, names, ref_labels):
    out = tmp_path / "output.csv"
    out.write_text(format_output_csv(names, np.array(probs_rows), SCENES))
    ref = tmp_path / "ref.csv"
    ref.write_text(
        "filename\tscene_label\n" + "".join(f"{n}\t{lab}\n" for n, lab in zip(names, ref_labels, strict=True))
    )
    return out, ref


def test_score_values_and_devices(tmp_path, capsys):
    names = ["audio/bus-lyon-1-1-a.wav", "audio/park-lyon-2-2-s4.wav"]
    p = np.full((2, 10), 0.02)
    p[0, 1], p[1, 1] = 0.82, 0.82  # both say bus
    out, ref = _files(tmp_path, p, names, ["bus", "park"])
    m = score(out, ref)
    assert m["overall"]["accuracy"] == pytest.approx(0.5)  # bus right, park wrong: mean of 1 and 0
    assert m["overall"]["logloss"] == pytest.approx(-(np.log(0.82) + np.log(0.02)) / 2, rel=1e-6)
    assert set(m["device_wise"]) == {"a", "s4"}
    assert main(["score", str(out), str(ref)]) == 0
    assert "accuracy 50.0%" in capsys.readouterr().out


def test_score_errors_name_the_problem(tmp_path):
    names = ["audio/bus-lyon-1-1-a.wav", "audio/park-lyon-2-2-a.wav"]
    out, ref = _files(tmp_path, np.full((2, 10), 0.1), names, ["bus", "park"])
    ref.write_text(ref.read_text() + "audio/tram-lyon-3-3-a.wav\ttram\n")
    with pytest.raises(DataError, match="1 missing"):
        score(out, ref)
    out.write_text(out.read_text().replace("0.10000000", "nan", 1))
    with pytest.raises(DataError, match="output.csv:2: probability that is not finite"):
        score(out, ref)
    out.write_text("filename\tscene_label\tbus\n")
    with pytest.raises(DataError, match="header lacks"):
        score(out, ref)
