"""tinyasc export --format onnx: onnxruntime agrees with PyTorch, int8 is real int8, predict runs it."""

import json

import numpy as np
import onnx
import pytest
import torch

from tinyasc.cli import main
from tinyasc.evaluate.predict import load_model
from tinyasc.export import INPUT, ExportError, OnnxModel, export_onnx


def _features(run, n=24):
    from tinyasc.data.dataset import prepare_splits
    from tinyasc.rundir import RunDir

    cfg = RunDir(run).config()
    splits = prepare_splits(cfg.data, cfg.frontend)
    rows = np.sort(splits.rows(splits.evaluate)[:n])
    return np.asarray(splits.features[rows], dtype=np.float32)


def test_float32_export_agrees_with_pytorch(trained_run, tmp_path, capsys):
    run, _ = trained_run
    out = tmp_path / "m.onnx"
    assert main(["export", str(run), "-o", str(out)]) == 0
    assert "same decisions" in capsys.readouterr().out
    contract = json.loads((tmp_path / "m.onnx.json").read_text())
    assert contract["input"]["shape"] == ["batch", 1, 40, 500] and contract["input"]["name"] == INPUT
    assert contract["check"]["max_abs_probability_difference"] <= 1e-4
    assert "Hz" in contract["features"] and contract["classes"][0] == "airport"
    assert contract["layout_transforms"] is True  # the baseline's family: onnxruntime's default level
    # independently: onnxruntime on real-length clips against the float PyTorch model
    feats = _features(run)
    got = OnnxModel(out).probabilities(feats)
    ref = load_model(run / "model.pt")
    with torch.no_grad():
        want = torch.softmax(ref.model(ref.norm(torch.from_numpy(feats)[:, None])).double(), 1).numpy()
    assert np.abs(got - want).max() < 1e-4
    margin = np.diff(np.sort(want, 1)[:, -2:], axis=1)[:, 0]
    clear = margin > 2e-4
    assert (got.argmax(1) == want.argmax(1))[clear].all()
    assert got.shape == (len(feats), 10)


def test_int8_and_float16_exports_are_what_they_say(trained_run, tmp_path):
    run, _ = trained_run
    c8 = export_onnx(run, tmp_path / "q.onnx", "int8", check_clips=32, calibration_clips=16)
    graph = onnx.load(str(tmp_path / "q.onnx")).graph
    ops = {n.op_type for n in graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    int8_weights = [i for i in graph.initializer if i.data_type == onnx.TensorProto.INT8]
    assert sum(int(np.prod(i.dims)) for i in int8_weights) >= 784 + 12_544 + 25_088 + 6_400 + 1_000
    assert c8["check"]["max_abs_probability_difference"] <= 5e-2
    c16 = export_onnx(run, tmp_path / "h.onnx", "float16", check_clips=32)
    f16 = [
        i
        for i in onnx.load(str(tmp_path / "h.onnx")).graph.initializer
        if i.data_type == onnx.TensorProto.FLOAT16
    ]
    assert sum(int(np.prod(i.dims)) for i in f16) >= 45_000
    assert c16["check"]["max_abs_probability_difference"] <= 1e-2
    assert c16["bytes_on_disk"] < c8["bytes_on_disk"] * 2


def test_int8_export_of_an_int8_run_is_its_own_int8_model(trained_run, tmp_path):
    """--int8 of a run that ships int8: the model the run evaluated and counted, its integers in the
    graph, checked against that PyTorch int8 model; of a float run, onnxruntime's quantisation."""
    from tinyasc.artifact import load_stored, normalizer_of
    from tinyasc.compress import int8
    from tinyasc.io import load_checkpoint

    run, _ = trained_run
    q_run = tmp_path / "q_run"
    args = ["compress", str(run), "--method", "int8-ptq", "--out", str(q_run), "--no-evaluate", "--quiet"]
    assert main(args) == 0
    c = export_onnx(q_run, tmp_path / "own.onnx", "int8", check_clips=32)
    assert c["int8"] == int8.SCHEME and c["check"]["reference"] == "PyTorch int8"
    assert c["check"]["max_abs_probability_difference"] <= 1e-3 and c["check"]["same_decisions_clear"] == 1
    stored = load_checkpoint(q_run / "model_int8.pt")["state"]
    graph = onnx.load(str(tmp_path / "own.onnx")).graph
    in_graph = sorted(
        onnx.numpy_helper.to_array(i).tobytes()
        for i in graph.initializer
        if i.data_type == onnx.TensorProto.INT8
    )
    assert in_graph == sorted(t.numpy().tobytes() for t in stored.values() if t.dtype == torch.int8)
    feats = _features(q_run, 16)
    got = OnnxModel(tmp_path / "own.onnx").probabilities(feats)
    art = load_checkpoint(q_run / "model_int8.pt")
    q = load_stored(art)
    with torch.no_grad():
        want = torch.softmax(q(normalizer_of(art)(torch.from_numpy(feats)[:, None])).double(), 1).numpy()
    assert np.abs(got - want).max() < 1e-3
    assert export_onnx(run, tmp_path / "ort.onnx", "int8", check_clips=16, calibration_clips=16)["int8"] == (
        "onnxruntime static (QDQ)"
    )


def test_predict_runs_an_onnx_file_like_the_run(trained_run, tiny_corpus, tmp_path):
    run, _ = trained_run
    out = tmp_path / "m.onnx"
    export_onnx(run, out, "float32", check_clips=16)
    wavs = sorted((tiny_corpus / "audio").glob("*.wav"))[:3]
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    assert main(["predict", str(out), *map(str, wavs), "-o", str(a), "--workers", "1"]) == 0
    assert main(["predict", str(run / "model.pt"), *map(str, wavs), "-o", str(b), "--workers", "1"]) == 0
    pa = np.array([[float(v) for v in ln.split("\t")[2:12]] for ln in a.read_text().splitlines()[1:]])
    pb = np.array([[float(v) for v in ln.split("\t")[2:12]] for ln in b.read_text().splitlines()[1:]])
    assert np.abs(pa - pb).max() < 1e-4


def test_export_errors(trained_run, tmp_path, capsys):
    run, _ = trained_run
    with pytest.raises(ExportError, match="must end in .onnx"):
        export_onnx(run, tmp_path / "m.bin")
    assert main(["export", str(tmp_path / "missing")]) == 2
    assert "not a run directory" in capsys.readouterr().err
    (tmp_path / "lonely.onnx").write_bytes(b"")
    with pytest.raises(ExportError, match="no feature contract"):
        OnnxModel(tmp_path / "lonely.onnx")


def test_c_arrays_hold_exactly_the_stored_tensors(trained_run, tmp_path, capsys):
    import re

    import torch

    from tinyasc.io import load_checkpoint

    run, _ = trained_run
    out = tmp_path / "model.h"
    assert main(["export", str(run), "--format", "c", "-o", str(out)]) == 0
    text = out.read_text()
    art = load_checkpoint(run / "model_float16.pt")
    record = json.loads((tmp_path / "model.h.json").read_text())
    assert record["storage"] == "float16" and "0.040 s" not in text and "airport" in text
    for key, t in {"norm_mean": art["norm_mean"], "norm_std": art["norm_std"], **art["state"]}.items():
        if key.endswith("num_batches_tracked"):
            continue
        name = "w_" + re.sub(r"[^0-9A-Za-z]", "_", key)
        body = re.search(rf"{name}\[\d+\] = \{{(.*?)\}};", text).group(1).split(", ")
        flat = t.reshape(-1)
        if t.dtype == torch.float16:  # the raw half-precision bits
            assert [int(v) for v in body] == flat.view(torch.int16).numpy().astype("uint16").tolist(), key
        else:
            assert np.allclose([float(v.rstrip("f")) for v in body], flat.float().numpy(), rtol=0, atol=0), (
                key
            )
    assert record["bytes"] == sum(a["bytes"] for a in record["arrays"])
