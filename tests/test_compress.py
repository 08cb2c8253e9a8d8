"""tinyasc compress: every method on a small trained run, exact stored sizes, closeness, errors."""

import ast
import hashlib
import io
import json
from pathlib import Path

import pytest
import torch
import yaml

from tests.conftest import copy_run
from tinyasc.artifact import build_model, load_stored, size_report, stored_state
from tinyasc.cli import main
from tinyasc.compress import int8
from tinyasc.compress.binary import pack_binary, unpack_binary
from tinyasc.compress.prune import Pruner
from tinyasc.compress.size import BYTES_PER_DTYPE, example_input, model_size
from tinyasc.evaluate.predict import load_model
from tinyasc.io import load_checkpoint
from tinyasc.models import create_model
from tinyasc.workflows.compress import CompressError, CompressOptions, compress_run, parse_method


def _calibration(model, n=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, model.n_mels, model.frames, generator=g)
    return lambda: iter([x[:4], x[4:]])


def _roundtrip(obj):
    buf = io.BytesIO()
    torch.save(obj, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)  # plain tensors and containers only


def _recount(state: dict) -> int:
    """Non-zero bytes of a stored state by hand: packed bits in full, the rest non-zero x width."""
    total = 0
    for k, t in state.items():
        if k.endswith("num_batches_tracked"):  # a PyTorch counter, not a parameter (compress/size.py)
            continue
        if k.endswith("::bits"):
            total += t.numel()
        else:
            total += int((t != 0).sum()) * BYTES_PER_DTYPE[t.dtype]
    return total


@pytest.mark.parametrize(
    "name", ["dcase2021_baseline", "bcresnet_asc_c20", "trident_resnet_c8", "cpresnet_c20"]
)
def test_int8_ptq_stores_the_scheme_exactly(name):
    torch.manual_seed(0)
    model = create_model(name).eval()
    state, extra = stored_state(model, "int8", _calibration(model))
    assert extra["int8"]["scheme"] == int8.SCHEME and extra["int8"]["calibration_clips"] == 8
    art = _roundtrip(
        {
            "model_name": name,
            "model_params": {},
            "classes": list("abcdefghij"),
            "storage": "int8",
            "state": state,
            **extra,
        }
    )
    q = load_stored(art)
    x = next(_calibration(model, 4, seed=1)())
    direct = int8.convert(_calibrated(model))
    torch.testing.assert_close(q(x), direct(x), rtol=0, atol=0)  # the file rebuilds the same int8 model
    layers = [m for m in q.modules() if isinstance(m, int8.Int8Layer)]
    shells = {id(m.shell) for m in layers}
    floats = [n for n, m in q.named_modules() if isinstance(m, int8._LAYERS) and id(m) not in shells]
    assert layers and floats == []  # every conv and linear layer of these models is stored int8
    for layer in layers:
        assert layer.weight.dtype == torch.int8 and int(layer.weight.abs().max()) <= int8.WEIGHT_MAX
        assert layer.input_zero_point.dtype == torch.uint8 and layer.weight_scale.dtype == torch.float32
    assert size_report(art).nonzero_bytes == _recount(art["state"])
    stored = {t.dtype for k, t in state.items() if not k.endswith("num_batches_tracked")}
    assert stored <= {torch.int8, torch.uint8, torch.float32}


def _calibrated(model):
    p = int8.prepare(model, example_input(model))
    int8.calibrate(p, _calibration(model)())
    return p


def test_int8_layer_computes_the_integer_convolution():
    """An Int8Layer's float32 output is the integer convolution of its quantised input and weight,
    rescaled: computed here in float64 from the integers alone."""
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 5, 3, padding=1, stride=(1, 2))
    observed = int8.ObservedLayer(conv, qat=False)
    x = torch.randn(2, 3, 9, 11) * 3 + 1
    observed(x)
    q = int8.Int8Layer.from_observed(observed, "conv")
    s, z = float(q.input_scale), int(q.input_zero_point)
    xq = torch.clamp(torch.round(x.double() / s) + z, 0, 255)  # uint8 codes
    assert int(xq.min()) == 0 and int(xq.max()) == 255  # min-max calibration spans the grid
    acc = torch.nn.functional.conv2d(xq - z, q.weight.double(), None, conv.stride, conv.padding)  # integers
    assert torch.equal(acc, torch.round(acc))
    ref = acc * s * q.weight_scale.double().reshape(-1, 1, 1) + q.bias.double().reshape(-1, 1, 1)
    torch.testing.assert_close(q(x).double(), ref, rtol=1e-5, atol=1e-5)
    # and it stays close to the float layer it came from
    assert (q(x) - conv(x)).abs().max() < 0.02 * conv(x).abs().max()


def test_int8_weights_are_symmetric_per_channel_and_inputs_span_their_range():
    torch.manual_seed(0)
    lin = torch.nn.Linear(6, 4)
    with torch.no_grad():
        lin.weight[2] = 0.0  # a pruned row: scale at its floor, all codes zero
    observed = int8.ObservedLayer(lin, qat=False)
    observed(torch.tensor([[0.5, 2.0, 1.0, 0.0, 1.5, 0.25]]))  # non-negative: the range widens to hold 0
    q = int8.Int8Layer.from_observed(observed, "lin")
    assert q.weight.abs().amax(1).tolist() == [127, 127, 0, 127]
    torch.testing.assert_close(q.weight_scale[[0, 1, 3]], lin.weight.detach().abs().amax(1)[[0, 1, 3]] / 127)
    assert int(q.input_zero_point) == 0 and float(q.input_scale) == pytest.approx(2.0 / 255)
    with pytest.raises(int8.Int8Error, match="never observed"):
        int8.Int8Layer.from_observed(int8.ObservedLayer(lin, qat=False), "fresh")


def test_int8_qat_trains_what_ships():
    """QAT's eval-mode forward (fake quantisation with the learned ranges) is the converted int8 model's."""
    torch.manual_seed(0)
    model = create_model("dcase2021_baseline")
    prepared = int8.prepare(model, example_input(model), qat=True)
    assert prepared.training
    opt = torch.optim.SGD(prepared.parameters(), lr=0.01)
    for x in _calibration(model, 8)():
        loss = prepared(x).logsumexp(1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert all(p.grad is not None for p in prepared.parameters() if p.requires_grad)  # straight through
    x = next(_calibration(model, 4, seed=3)())
    prepared.eval()
    torch.testing.assert_close(int8.convert(prepared)(x), prepared(x), rtol=1e-5, atol=1e-5)


def test_int8_refuses_what_it_cannot_fold_or_load():
    class SharedConvOutput(torch.nn.Module):  # the conv's output is used before and after its norm
        n_mels, frames = 8, 8

        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 4, 3, padding=1)
            self.bn = torch.nn.BatchNorm2d(4)
            self.head = torch.nn.Linear(4, 2)

        def forward(self, x):
            y = self.conv(x)
            return self.head((self.bn(y) + y).mean((2, 3)))

    m = SharedConvOutput().eval()
    with torch.no_grad():
        m.bn.running_mean.fill_(0.5)
        m.bn.running_var.fill_(4.0)
    with pytest.raises(int8.Int8Error, match="folding batch norm .* changes the output"):
        int8.prepare(m, example_input(m))
    model = create_model("dcase2021_baseline").eval()
    state, _ = stored_state(model, "int8", _calibration(model))
    state["conv1.weight"] = state["conv1.weight"].float()
    with pytest.raises(int8.Int8Error, match="conv1.weight is torch.float32"):
        int8.load_int8(model, example_input(model), state)


def test_no_tinyasc_module_uses_torch_ao_quantization():
    """int8 is tinyasc's own: the deprecated torch.ao.quantization API appears nowhere in the package."""
    root = Path(int8.__file__).parents[1]
    users = []
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            elif isinstance(node, ast.Attribute):
                names = [ast.unparse(node)]
            else:
                continue
            users += [f"{path.relative_to(root)}: {n}" for n in names if n.startswith("torch.ao")]
    assert users == []


def test_an_int8_file_of_the_fx_quantiser_is_refused_by_name(tmp_path):
    model = create_model("dcase2021_baseline").eval()
    state, _ = stored_state(model, "int8", _calibration(model))
    art = {"model_name": "dcase2021_baseline", "model_params": {}, "classes": list("abcdefghij")}
    old = dict(art, storage="int8", state=state, int8={"method": "ptq", "backend": "x86", "meta": {}})
    with pytest.raises(ValueError, match="earlier tinyasc .*compress its float run again"):
        load_stored(old)


def test_int8_stays_close_to_float_on_the_baseline():
    torch.manual_seed(0)
    model = create_model("dcase2021_baseline").eval()
    q = int8.convert(_calibrated(model))
    x = next(_calibration(model, 4)())
    ref = model(x)
    assert (q(x) - ref).abs().max() < 0.05 * ref.abs().max()


def test_int8_size_hand_count_baseline():
    torch.manual_seed(0)
    model = create_model("dcase2021_baseline").eval()
    state, _ = stored_state(model, "int8", _calibration(model))
    rep = size_report({"storage": "int8", "state": state})
    # per layer (batch norm folded in): int8 weights + float32 scale per output channel + float32 bias
    #           + its input's float32 scale and uint8 zero point
    conv1 = 16 * 49 + 16 * 4 + 16 * 4 + 5  # 917
    conv2 = 16 * 16 * 49 + 16 * 4 + 16 * 4 + 5  # 12,677
    conv3 = 32 * 16 * 49 + 32 * 4 + 32 * 4 + 5  # 25,349
    dense1 = 100 * 64 + 100 * 4 + 100 * 4 + 5  # 7,205
    dense2 = 10 * 100 + 10 * 4 + 10 * 4 + 5  # 1,085
    assert rep.bytes == conv1 + conv2 + conv3 + dense1 + dense2 == 47_233
    assert rep.bytes == model_size(model, "int8").bytes  # the estimate before quantising is exact
    by_layer = {r.name: r.bytes for r in rep.rows}
    assert by_layer["conv1"] == conv1 and by_layer["dense1"] == dense1
    # inputs after a ReLU never go below 0: their zero point is 0 and free by the non-zero rule
    assert int(state["conv2.input_zero_point"]) == 0 and int(state["conv1.input_zero_point"]) > 0


def test_binary_pack_hand_count_and_exact_unpack():
    torch.manual_seed(0)
    model = build_model("dcase2021_baseline", 10, {"binary": True}).eval()
    state, extra = pack_binary(model)
    rep = size_report({"storage": "binary", "state": state})
    by_layer = {r.name: r.bytes for r in rep.rows}
    # first and last layers kept at float16 (weights + bias), batch norm float32 (4 tensors)
    assert by_layer["conv1"] == (784 + 16) * 2 and by_layer["dense2"] == (1000 + 10) * 2
    assert by_layer["bn1"] == 4 * 16 * 4
    # 1-bit layers: one bit per weight, a float32 scale, float16 bias
    assert by_layer["conv2"] == 12_544 // 8 + 4 + 16 * 2
    assert by_layer["conv3"] == 25_088 // 8 + 4 + 32 * 2
    assert by_layer["dense1"] == 6_400 // 8 + 4 + 100 * 2
    assert rep.bytes == 10_456 and rep.nonzero_bytes == _recount(state)
    again = build_model("dcase2021_baseline", 10, {"binary": True}).eval()
    again.load_state_dict(unpack_binary(_roundtrip(state), extra["binary"]))
    x = next(_calibration(model, 2)())
    # the forward pass sees the same signs and scales; only float16 rounding of kept layers differs
    torch.testing.assert_close(again(x), model(x), atol=2e-2, rtol=1e-2)


def test_parse_method_and_conflicts():
    assert parse_method("prune+int8-ptq") == (True, "int8-ptq")
    assert parse_method("float16") == (False, "float16")
    assert parse_method("prune") == (True, None)
    with pytest.raises(CompressError, match="both storage formats"):
        parse_method("float16+int8-ptq")
    with pytest.raises(CompressError, match="once and first"):
        parse_method("int8-ptq+prune")
    with pytest.raises(CompressError, match="unknown step 'int4'"):
        parse_method("int4")


def _digest(run: Path) -> dict:
    return {p.name: hashlib.sha1(p.read_bytes()).hexdigest() for p in sorted(run.iterdir()) if p.is_file()}


def _eval_probs(run: Path) -> dict:
    lines = (run / "output.csv").read_text().splitlines()[1:]
    return {ln.split("\t")[0]: [float(v) for v in ln.split("\t")[2:]] for ln in lines}


@pytest.fixture(scope="module")
def source(trained_run, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("compress")
    run = copy_run(trained_run[0], tmp / "run")  # evaluate writes into it: a copy of the shared run
    assert main(["evaluate", str(run)]) == 0
    return run, tmp / "compressed"


def test_every_method_through_the_cli(source, capsys):
    run, out = source
    before = _digest(run)
    ref = _eval_probs(run)
    cases = {
        "float16": [],
        "int8-ptq": ["--calibration-clips", "16"],
        "int8-qat": ["--epochs", "1", "train.batch_size=8"],  # key=value overrides, as in train
        "prune+float16": ["--target", "0.5", "--epochs", "2", "--ramp-epochs", "1"],
        "prune+int8-ptq": ["--target-bytes", "30000", "--epochs", "1"],
        "binary": ["--epochs", "1"],
    }
    for method, extra in cases.items():
        dst = out / method.replace("+", "_")
        assert main(["compress", str(run), "--method", method, "--out", str(dst), "--quiet", *extra]) == 0, (
            method
        )
        rec = json.loads((dst / "compress.json").read_text())
        size = json.loads((dst / "size.json").read_text())
        art = load_checkpoint(dst / size["model_file"])  # weights_only: no code from the file
        assert size["nonzero_bytes"] == _recount(art["state"]) == rec["size"]["nonzero_bytes"], method
        assert (dst / "metrics.json").exists() and (dst / "output.csv").exists()
        assert not dst.with_name(dst.name + ".partial").exists()
        lm = load_model(dst)
        assert lm.storage == rec["storage"]
        probs = _eval_probs(dst)
        assert set(probs) == set(ref)
        if method == "float16":  # the float16 cast of the same weights: the source's own shipped model
            diff = max(abs(a - b) for k in ref for a, b in zip(ref[k], probs[k], strict=True))
            assert diff < 1e-6
        if method == "int8-ptq":
            diff = max(abs(a - b) for k in ref for a, b in zip(ref[k], probs[k], strict=True))
            assert diff < 0.05
        capsys.readouterr()
    assert _digest(run) == before  # the source run is untouched
    assert yaml.safe_load((out / "int8-qat" / "config.yaml").read_text())["train"]["batch_size"] == 8
    # the runs side by side, and the size-versus-accuracy plot
    dsts = [out / m.replace("+", "_") for m in cases]
    assert main(["compare", str(run), *map(str, dsts), "--plot", str(out / "cmp.png"), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out.split("\nsize against accuracy")[0])
    assert [r["name"] for r in rows] == [run.name, *(d.name for d in dsts)]
    for r, d in zip(rows[1:], dsts, strict=True):
        assert r["bytes"] == json.loads((d / "size.json").read_text())["nonzero_bytes"]
    assert (out / "cmp.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["compare", str(out)]) == 2  # not a run: one line, exit 2
    assert "no size.json" in capsys.readouterr().err
    pf = json.loads((out / "prune_float16" / "metrics.jsonl").read_text().splitlines()[-1])
    assert pf["sparsity"] == pytest.approx(0.5, abs=1e-4)
    pi = json.loads((out / "prune_int8-ptq" / "compress.json").read_text())
    assert pi["size"]["nonzero_bytes"] <= 30_000 and 0 < pi["sparsity"] < 1
    b = load_model(out / "binary").model
    w = b.conv2.weight.detach()
    assert torch.allclose(w.abs(), w.abs().max())  # +-scale: the unpacked signs
    # a pruned run fine-tuned again (here quantisation-aware) keeps its zeros
    qat = out / "pruned_then_qat"
    assert (
        main(
            [
                "compress",
                str(out / "prune_float16"),
                "--method",
                "int8-qat",
                "--epochs",
                "1",
                "--out",
                str(qat),
                "--quiet",
                "--no-evaluate",
            ]
        )
        == 0
    )
    state = load_checkpoint(qat / "model_int8.pt")["state"]
    weights = [t for t in state.values() if t.dtype == torch.int8]
    zeros = sum(int((t == 0).sum()) for t in weights)
    assert zeros >= 0.5 * sum(t.numel() for t in weights) - 1


def test_size_cli_reads_every_storage(source, capsys):
    run, out = source
    for name in ("int8-ptq", "binary"):
        dst = out / name
        assert main(["size", str(dst), "--json"]) == 0
        got = json.loads(capsys.readouterr().out)
        assert got["nonzero_bytes"] == json.loads((dst / "size.json").read_text())["nonzero_bytes"]
    assert main(["size", str(out / "int8-ptq" / "model_int8.pt"), "--precision", "float16"]) == 2
    assert "re-counts a float model" in capsys.readouterr().err


def test_bad_input_is_a_clear_error_and_writes_nothing(source, tmp_path, capsys):
    run, _ = source
    dst = tmp_path / "new"

    def fails(args, message):
        assert main(["compress", *args]) == 2
        assert message in capsys.readouterr().err
        assert not dst.exists() and not dst.with_name("new.partial").exists()

    fails([str(tmp_path / "nope"), "--method", "float16", "--out", str(dst)], "not a finished tinyasc run")
    fails([str(run), "--method", "float16+int8-ptq", "--out", str(dst)], "both storage formats")
    fails([str(run), "--method", "prune+binary", "--target", "0.5", "--out", str(dst)], "never zero")
    fails([str(run), "--method", "float16", "--target", "0.5", "--out", str(dst)], "need prune in --method")
    fails([str(run), "--method", "float16", "--epochs", "3", "--out", str(dst)], "does not train")
    fails([str(run), "--method", "prune", "--out", str(dst)], "exactly one of --target")
    fails([str(run), "--method", "prune", "--target", "1.2", "--out", str(dst)], "must lie in (0, 1)")
    fails(
        [str(run), "--method", "prune+float16", "--target-bytes", "500", "--out", str(dst)],
        "cannot be reached",
    )
    fails([str(run), "--method", "float16", "--out", str(run)], "exists already")


def test_interrupted_fine_tune_resumes(source, tmp_path, monkeypatch):
    run, _ = source
    dst = tmp_path / "pruned"
    opts = CompressOptions(target=0.4, epochs=2, ramp_epochs=1)
    import tinyasc.workflows.compress as workflow

    def crash(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(workflow, "evaluate_run", crash)
    with pytest.raises(KeyboardInterrupt):
        compress_run(run, dst, "prune+float16", opts, progress=False)
    assert not dst.exists() and (tmp_path / "pruned.partial" / "last.pt").exists()
    with pytest.raises(CompressError, match="--resume"):
        compress_run(run, dst, "prune+float16", opts, progress=False)
    monkeypatch.undo()
    rec = compress_run(run, dst, "prune+float16", opts, resume=True, progress=False)
    assert rec["evaluation"]["accuracy"] >= 0 and dst.exists()
    assert len((dst / "metrics.jsonl").read_text().splitlines()) == 2  # no epoch trained twice


def test_pruned_int8_keeps_zeros_free():
    torch.manual_seed(0)
    model = create_model("dcase2021_baseline").eval()
    p = Pruner(model, "global")
    p.update(0.5)
    state = stored_state(model, "int8", _calibration(model))[0]
    weights = {k: t for k, t in state.items() if t.dtype == torch.int8}  # the quantised weights
    assert sum(t.numel() for t in weights.values()) == 784 + 12_544 + 25_088 + 6_400 + 1_000
    # every pruned weight is an int8 zero (symmetric quantisation: zero point 0), and zeros are free
    nonzero = sum(int((t != 0).sum()) for t in weights.values())
    assert nonzero <= p.total() - p.zeros()
    rows = {r.name: r for r in size_report({"storage": "int8", "state": state}).rows}
    nz = {k: int((state[k] != 0).sum()) for k in ("conv3.weight", "conv3.bias", "conv3.input_zero_point")}
    # int8 weights at 1 B, 32 float32 channel scales, float32 biases, float32 input scale, uint8 zero point
    expected = nz["conv3.weight"] + 32 * 4 + 4 * nz["conv3.bias"] + 4 + nz["conv3.input_zero_point"]
    assert rows["conv3"].nonzero_bytes == expected


def test_training_config_ships_int8_directly(tiny_corpus, tmp_path):
    from tests.conftest import train_args

    run = tmp_path / "run"
    assert (
        main(train_args(tiny_corpus, run, tmp_path / "cache", 1, ["quantize=int8", "calibration_clips=8"]))
        == 0
    )
    size = json.loads((run / "size.json").read_text())
    art = load_checkpoint(run / "model_int8.pt")
    train_clips = json.loads((run / "metrics.jsonl").read_text().splitlines()[0])["train_clips"]
    assert size["model_file"] == "model_int8.pt" and art["int8"]["calibration_clips"] == min(8, train_clips)
    assert size["nonzero_bytes"] == _recount(art["state"])
    assert main(["evaluate", str(run)]) == 0
    bad = train_args(tiny_corpus, tmp_path / "bad", tmp_path / "cache", 1, ["quantize=binary"])
    assert main(bad) == 2  # a float model cannot ship 1-bit: the config says what to set
