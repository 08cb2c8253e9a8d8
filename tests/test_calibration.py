import json

import numpy as np
import pytest

from tinyasc.cli import main
from tinyasc.evaluate.calibration import fit_temperature, nll


def test_temperature_fixes_an_overconfident_model():
    rng = np.random.default_rng(0)
    clean = rng.normal(0, 1.5, (5000, 10))  # calibrated by construction: labels drawn from softmax(clean)
    p = np.exp(clean) / np.exp(clean).sum(axis=1, keepdims=True)
    y = np.array([rng.choice(10, p=row) for row in p])
    logits = 4.0 * clean  # the same ranking, four times too confident
    t = fit_temperature(logits, y)
    assert 3.4 < t < 4.6
    assert nll(logits, y, t) < nll(logits, y, 1.0) - 0.3
    assert nll(logits, y, t) == pytest.approx(
        min(nll(logits, y, s) for s in np.linspace(0.5, 8, 300)), abs=1e-3
    )


def test_calibrate_run_then_evaluate_reports_before_and_after(run_copy, capsys):
    run, _ = run_copy
    assert main(["calibrate", str(run), "--quiet"]) == 0
    rec = json.loads((run / "calibration.json").read_text())
    said = capsys.readouterr().out
    assert rec["at_upper_bound"] == (rec["temperature"] >= 19.98)
    assert ("warning: T reached its upper bound 20" in said) == rec["at_upper_bound"]
    assert rec["temperature"] >= 1.0 and rec["bounds"][0] == 1.0  # never sharpens by default
    assert "validation split" in rec["fitted_on"]
    assert rec["validation_logloss_after"] <= rec["validation_logloss_before"] + 1e-9
    assert main(["calibrate", str(run), "--quiet", "--allow-sharpening"]) == 0
    free = json.loads((run / "calibration.json").read_text())
    assert free["temperature"] == pytest.approx(free["unconstrained_temperature"])
    assert free["validation_logloss_after"] <= rec["validation_logloss_after"] + 1e-9
    assert main(["evaluate", str(run)]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["temperature"] == pytest.approx(free["temperature"])
    if free["temperature"] != 1.0:
        assert "uncalibrated" in metrics and "log loss" in (run / "report.md").read_text()
    (run / "calibration.json").unlink()  # uncalibrated again
    assert main(["evaluate", str(run)]) == 0


def test_a_model_that_knows_nothing_drives_t_to_its_upper_bound():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 10, (200, 10))  # confident and unrelated to the labels
    labels = rng.integers(0, 10, 200)
    assert fit_temperature(logits, labels, 1.0) == pytest.approx(20.0, rel=1e-3)
