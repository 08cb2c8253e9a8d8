"""tinyasc predict on files of other formats, rates, channel counts and lengths; bad files among good."""

import json

import numpy as np
import pytest
import soundfile as sf
from scipy.signal import resample_poly

from tinyasc.cli import main
from tinyasc.evaluate.infer import collect_inputs, predict_files, window_starts
from tinyasc.evaluate.predict import load_model


@pytest.fixture(scope="module")
def clip(tiny_corpus):
    x, sr = sf.read(next((tiny_corpus / "audio").glob("park-*-a.wav")), dtype="float32")
    assert sr == 44100
    return x


def test_window_rule():
    assert window_starts(100, 100, 100) == [0]
    assert window_starts(30, 100, 100) == [0]  # short: one padded window
    assert window_starts(260, 100, 100) == [0, 100, 200]  # last holds 60 >= 50: kept, padded
    assert window_starts(230, 100, 100) == [0, 100]  # last would hold 30 < 50: dropped
    assert window_starts(200, 100, 50) == [0, 50, 100, 150]


def test_any_format_rate_channels_length(trained_run, clip, tmp_path):
    run, _ = trained_run
    files = {
        "same.wav": (clip, 44100, "PCM_24"),
        "rate16k.flac": (resample_poly(clip, 160, 441).astype(np.float32), 16000, None),
        "stereo48k.wav": (
            np.stack([resample_poly(clip, 160, 147)] * 2, axis=1).astype(np.float32),
            48000,
            "FLOAT",
        ),
        "pcm16.wav": (clip, 44100, "PCM_16"),
        "long.wav": (np.concatenate([clip, clip, clip[: 6 * 44100]]), 44100, "FLOAT"),
        "vorbis.ogg": (clip, 44100, None),
        "short.wav": (clip[: 3 * 44100], 44100, "PCM_32"),
    }
    for name, (x, sr, subtype) in files.items():
        sf.write(tmp_path / name, x, sr, subtype=subtype)
    lm = load_model(run)
    paths, failed = collect_inputs([str(tmp_path)])
    assert not failed and len(paths) == 7
    res = {r.path.split("/")[-1]: r for r in predict_files(lm, paths, workers=2)}
    for r in res.values():
        assert r.error is None and abs(r.probs.sum() - 1) < 1e-6
    ref = res["same.wav"].probs
    long = res["long.wav"]
    assert [(s, e) for s, e, _ in long.windows] == [(0.0, 10.0), (10.0, 20.0), (20.0, 26.0)]
    np.testing.assert_allclose(long.probs, np.mean([p for _, _, p in long.windows], axis=0))
    np.testing.assert_allclose(long.windows[0][2], ref, atol=1e-5)  # first window is the clip itself
    assert len(res["short.wav"].windows) == 1


def test_resampled_and_downmixed_input_gives_the_same_features(trained_run, clip, tmp_path):
    """48 kHz stereo and 16 kHz mono versions of a clip reach the model as (nearly) the same log-mel."""
    from tinyasc.evaluate import infer

    run, _ = trained_run
    lm = load_model(run)
    sf.write(tmp_path / "ref.wav", clip, 44100, subtype="FLOAT")
    sf.write(
        tmp_path / "s48.wav", np.stack([resample_poly(clip, 160, 147)] * 2, axis=1), 48000, subtype="FLOAT"
    )
    sf.write(tmp_path / "m16.wav", resample_poly(clip, 160, 441), 16000, subtype="FLOAT")
    infer._init(lm.frontend, 10.0, 10.0)

    def first_window(path):  # the worker's features of a file's first window
        part = infer.plan_parts(0, str(path), lm.frontend, 10.0, 10.0)[0]
        return infer._decode_part(part).features[0, 0]

    ref, s48, m16 = (first_window(tmp_path / n) for n in ("ref.wav", "s48.wav", "m16.wav"))
    inner = slice(5, -5)  # frames away from the edges, where the resamplers' filters start up
    assert np.abs(s48[:, inner] - ref[:, inner]).mean() < 0.05
    low = lm.frontend.n_mels * 2 // 3  # bands below 8 kHz, all that 16 kHz audio holds
    assert np.abs(m16[:low, inner] - ref[:low, inner]).mean() < 0.1


def test_bad_files_reported_and_others_processed(trained_run, clip, tmp_path, capsys):
    run, _ = trained_run
    sf.write(tmp_path / "good.wav", clip, 44100)
    sf.write(tmp_path / "silent.wav", np.zeros(44100), 44100)
    sf.write(tmp_path / "empty.wav", np.zeros(0), 44100)
    nan = clip.copy()
    nan[100] = np.nan
    sf.write(tmp_path / "nan.wav", nan, 44100, subtype="FLOAT")
    (tmp_path / "corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    (tmp_path / "notes.md").write_text("hello")
    (tmp_path / "list.txt").write_text("good.wav\n# a comment\nsilent.wav\n")
    out = tmp_path / "out.jsonl"
    args = [
        "predict",
        str(run),
        str(tmp_path / "list.txt"),
        str(tmp_path / "empty.wav"),
        str(tmp_path / "nan.wav"),
        str(tmp_path / "corrupt.wav"),
        str(tmp_path / "notes.md"),
        "-o",
        str(out),
        "--per-window",
    ]
    assert main(args) == 1
    rows = {r["filename"].split("/")[-1]: r for r in map(json.loads, out.read_text().splitlines())}
    assert rows["good.wav"]["scene_label"] and len(rows["good.wav"]["window_probabilities"]) == 1
    assert rows["silent.wav"]["error"].startswith("silent")
    assert rows["empty.wav"]["error"].startswith("empty")
    assert "NaN" in rows["nan.wav"]["error"]
    assert rows["corrupt.wav"]["error"].startswith("not readable audio")
    assert "unsupported extension" in rows["notes.md"]["error"]
    err = capsys.readouterr().err
    assert "corrupt.wav: not readable audio" in err and "1 file(s) predicted, 5 failed" in err


def test_csv_output_is_dcase_columns_plus_error(trained_run, clip, tmp_path):
    run, _ = trained_run
    sf.write(tmp_path / "good.wav", clip, 44100)
    assert main(["predict", str(run), str(tmp_path / "good.wav"), "-o", str(tmp_path / "o.csv")]) == 0
    lines = (tmp_path / "o.csv").read_text().splitlines()
    assert lines[0].split("\t")[:2] == ["filename", "scene_label"] and lines[0].split("\t")[-1] == "error"
    assert len(lines) == 2 and len(lines[1].split("\t")) == 13


def test_a_file_given_twice_is_predicted_once_and_a_zero_hop_is_refused(trained_run, clip, tmp_path, capsys):
    run, _ = trained_run
    sf.write(tmp_path / "good.wav", clip, 44100)
    (tmp_path / "list.txt").write_text("good.wav\n")
    good = str(tmp_path / "good.wav")
    out = tmp_path / "o.csv"
    assert main(["predict", str(run), good, good, str(tmp_path / "list.txt"), "-o", str(out)]) == 0
    assert len(out.read_text().splitlines()) == 2  # header and one row
    assert main(["predict", str(run), good, "--hop", "0"]) == 2
    assert "--window and --hop must be > 0 seconds" in capsys.readouterr().err


def test_long_files_stream_in_parts_with_the_same_result(trained_run, clip, tmp_path, monkeypatch):
    """Parts of a few windows (bounded memory for hours of audio) give what one whole-file pass gives,
    resampling included: each part is read with whole resampling blocks of margin."""
    from tinyasc.evaluate import infer

    run, _ = trained_run
    lm = load_model(run)
    rng = np.random.default_rng(1)
    long = np.concatenate([clip, rng.normal(0, 0.05, 44100 * 45)]).astype(np.float32)
    sf.write(
        tmp_path / "long48.wav", np.stack([resample_poly(long, 160, 147)] * 2, axis=1), 48000, subtype="FLOAT"
    )
    monkeypatch.setattr(infer, "PART_WINDOWS", 1000)
    (whole,) = predict_files(lm, [tmp_path / "long48.wav"], window_s=10.0, hop_s=5.0, workers=1)
    monkeypatch.setattr(infer, "PART_WINDOWS", 2)
    (parts,) = predict_files(lm, [tmp_path / "long48.wav"], window_s=10.0, hop_s=5.0, workers=2)
    assert len(parts.windows) == len(whole.windows) == 11
    for (s1, e1, p1), (s2, e2, p2) in zip(whole.windows, parts.windows, strict=True):
        assert (s1, e1) == (s2, e2)
        np.testing.assert_allclose(p1, p2, atol=1e-6)


def test_onnxruntime_runs_float_models_as_pytorch_does(
    trained_run, tiny_corpus, tmp_path, capsys, monkeypatch
):
    import os
    from pathlib import Path

    from tinyasc.data.cache import default_cache_dir

    run, _ = trained_run
    files = sorted((tiny_corpus / "audio").glob("*-a.wav"))[:4]
    outs = {}
    for runtime in ("torch", "onnxruntime", "auto"):
        out = tmp_path / f"{runtime}.csv"
        assert main(["predict", str(run), *map(str, files), "--runtime", runtime, "-o", str(out)]) == 0
        rows = [line.split("\t") for line in out.read_text().splitlines()[1:]]
        outs[runtime] = np.array([[float(v) for v in r[2:12]] for r in rows])
        assert "in " + ("PyTorch" if runtime == "torch" else "onnxruntime") in capsys.readouterr().err
    np.testing.assert_allclose(outs["onnxruntime"], outs["torch"], atol=1e-5)
    np.testing.assert_array_equal(outs["auto"], outs["onnxruntime"])
    # exported once into the cache, with the parity record beside it
    exports = sorted((default_cache_dir() / "onnx").glob("*.onnx"))
    record = json.loads(Path(str(exports[0]) + ".json").read_text())
    assert record["check"]["same_decisions"] and record["check"]["max_abs_probability_difference"] < 1e-4
    assert record["layout_transforms"] is True  # the baseline's family runs onnxruntime's default level
    stamp = os.stat(exports[0]).st_mtime_ns
    load_model(run, "onnxruntime")
    assert os.stat(exports[0]).st_mtime_ns == stamp
    # a tinyasc that exports another graph makes its own export, beside the older one
    monkeypatch.setattr("tinyasc.evaluate.predict.EXPORT_REVISION", 10**6)
    load_model(run, "onnxruntime")
    assert len(sorted((default_cache_dir() / "onnx").glob("*.onnx"))) == len(exports) + 1


def test_int8_runs_in_onnxruntime_with_its_own_integers(trained_run, tiny_corpus, tmp_path, capsys):
    """An int8 model file runs in onnxruntime by default (the same integers computed in float32, checked
    against PyTorch); what onnxruntime cannot run (a 1-bit model) is refused when asked for."""
    run, _ = trained_run
    int8_run = tmp_path / "int8"
    args = ["compress", str(run), "--method", "int8-ptq", "--out", str(int8_run), "--no-evaluate", "--quiet"]
    assert main(args) == 0
    assert load_model(int8_run, "auto").storage == "int8, onnxruntime"
    files = sorted((tiny_corpus / "audio").glob("*-a.wav"))[:4]
    outs = {}
    for runtime in ("torch", "auto"):
        out = tmp_path / f"int8_{runtime}.csv"
        assert main(["predict", str(int8_run), *map(str, files), "--runtime", runtime, "-o", str(out)]) == 0
        rows = [line.split("\t") for line in out.read_text().splitlines()[1:]]
        outs[runtime] = np.array([[float(v) for v in r[2:12]] for r in rows])
    np.testing.assert_allclose(outs["auto"], outs["torch"], atol=1e-3)
    assert (outs["auto"].argmax(1) == outs["torch"].argmax(1)).all()
    binary_run = tmp_path / "binary"
    args = ["compress", str(run), "--method", "binary", "--epochs", "1", "--out", str(binary_run)]
    assert main([*args, "--no-evaluate", "--quiet", "train.batch_size=8"]) == 0
    assert load_model(binary_run, "auto").storage == "binary"  # auto: PyTorch runs 1-bit
    capsys.readouterr()
    assert main(["predict", str(binary_run), str(tmp_path), "--runtime", "onnxruntime"]) == 2
    assert "--runtime onnxruntime:" in capsys.readouterr().err


def test_onnxruntime_level_follows_the_family(tmp_path):
    """BC-ResNet runs without onnxruntime's NCHWc layout transforms (measured faster so), the others with
    them; the choice travels in the export's contract and a contract without it keeps the default."""
    import torch

    ort = pytest.importorskip("onnxruntime")
    from tinyasc.export import Deployable, OnnxModel, export_module, layout_transforms, onnx_session
    from tinyasc.frontend import Normalizer
    from tinyasc.models import create_model

    assert layout_transforms(create_model("bcresnet_asc_c20")) is False
    assert layout_transforms(create_model("dcase2021_baseline")) is True
    path = tmp_path / "m.onnx"
    export_module(
        Deployable(Normalizer(40), create_model("dcase2021_baseline").eval()).eval(),
        torch.zeros(1, 1, 40, 500),
        path,
    )
    levels = ort.GraphOptimizationLevel

    def level(session):
        return session.get_session_options().graph_optimization_level

    assert level(onnx_session(path)) == levels.ORT_ENABLE_ALL
    assert level(onnx_session(path, layout_transforms=False)) == levels.ORT_ENABLE_EXTENDED
    contract = {"format": "tinyasc-onnx-1", "classes": [str(i) for i in range(10)], "frontend": {}}
    for written, expected in ((None, levels.ORT_ENABLE_ALL), (False, levels.ORT_ENABLE_EXTENDED)):
        meta = contract if written is None else {**contract, "layout_transforms": written}
        (tmp_path / "m.onnx.json").write_text(json.dumps(meta))
        assert level(OnnxModel(path).session) == expected
