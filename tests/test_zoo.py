"""The model zoo, parametrised over the registry: shapes, gradients, determinism, size and MACs."""

import glob
import json
import math

import pytest
import torch
from torch import nn

from tinyasc.cli import main
from tinyasc.compress.macs import count_macs
from tinyasc.compress.size import LIMIT_BYTES, fold_batchnorm, model_size
from tinyasc.config import ConfigError, FrontendConfig, load_config
from tinyasc.models import create_model, get_model_info, list_models
from tinyasc.models.cpresnet import Conv2dDamped, CPResNet
from tinyasc.models.registry import InputShapeError
from tinyasc.models.resnet import TridentResNet
from tinyasc.train.run import learning_rate, note_schedule

MODELS = list_models()
CONFIGS = {
    "BaselineCNN": "baseline",
    "BCResNetASC": "bcresnet",
    "CPResNet": "cpresnet",
    "ResNet": "resnet",
    "TridentResNet": "trident",
    "MobileNetV2": "mobilenetv2",
    "EfficientNet": "efficientnet",
    "SeparableCNN": "separable",
    "ShallowInception": "inception",
    "CPMobile": "cpmobile_dcase2024",
}


def _randomise_batchnorm(model: nn.Module) -> None:
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)


@pytest.mark.parametrize("name", MODELS)
def test_forward_backward_eval_determinism_and_shape_check(name):
    info = get_model_info(name)
    torch.manual_seed(0)
    model = create_model(name)
    x = torch.randn(2, 1, info.n_mels, info.frames)
    out = model(x)
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    out.logsumexp(1).sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, f"no finite gradient for {missing[:5]}"
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), model(x))
    with pytest.raises(InputShapeError, match=rf"expected \(batch, 1, {info.n_mels}, {info.frames}\)"):
        model(torch.randn(1, 1, info.n_mels + 8, info.frames))
    with pytest.raises(InputShapeError, match="frontend.n_mels"):
        model(torch.randn(1, info.n_mels, info.frames))


@pytest.mark.parametrize("name", MODELS)
def test_batchnorm_folding_keeps_outputs(name):
    """The int8 estimate and float16-folded rely on folding exactly the BNs a layer feeds."""
    info = get_model_info(name)
    model = create_model(name)
    _randomise_batchnorm(model)
    model.eval()
    x = torch.randn(1, 1, info.n_mels, info.frames)
    folded = fold_batchnorm(model, strict=False)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), rtol=1e-3, atol=1e-3)


def test_every_family_has_a_budget_variant_a_teacher_and_a_config():
    families: dict[str, set] = {}
    for name in MODELS:
        info = get_model_info(name)
        families.setdefault(info.family, set()).add(info.role)
        if info.role == "budget":
            model = create_model(name)
            assert model_size(model, info.ships_as).bytes <= LIMIT_BYTES, name
    assert set(families) == set(CONFIGS)
    for family, roles in families.items():
        if family != "BaselineCNN":
            assert {"budget", "teacher"} <= roles, family
    for family, stem in CONFIGS.items():
        cfg = load_config(f"configs/{stem}.yaml")
        info = get_model_info(cfg.model.name)
        assert info.family == family
        for key, value in {"n_mels": 40, **info.frontend}.items():
            assert getattr(cfg.frontend, key) == value, (stem, key)
        assert cfg.frontend.n_frames == info.frames, stem


def test_models_cli_agrees_with_size_cli(capsys):
    names = ["dcase2021_baseline", "bcresnet_asc_c20", "cpresnet_c20", "resnet_c16", "efficientnet_s"]
    assert main(["models", *names, "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    for name in names:
        for precision in ("float32", "float16", "int8"):
            main(["size", name, "--precision", precision, "--json"])
            report = json.loads(capsys.readouterr().out)
            assert report["bytes"] == rows[name][f"bytes_{precision}"], (name, precision)
            assert report["nonzero_bytes"] == report["bytes"]  # a name: the dense figure, as `models`
            assert report["macs"] == rows[name]["macs"]
        assert rows[name]["fits"] == (rows[name]["bytes_as_shipped"] <= 128000)
    assert main(["models"]) == 0
    table = capsys.readouterr().out
    assert all(name in table for name in MODELS) and "MMACs" in table


def test_macs_hand_count_baseline():
    # conv1 1->16 7x7, conv2 16->16 7x7 at 40x500; pool 5x5 -> 8x100; conv3 16->32 7x7; pool (4,100) -> 2x1;
    # dense 64->100, 100->10.
    hand = 40 * 500 * 16 * 1 * 49 + 40 * 500 * 16 * 16 * 49 + 8 * 100 * 32 * 16 * 49 + 64 * 100 + 100 * 10
    assert hand == 286_637_800
    report = count_macs(create_model("dcase2021_baseline"))
    assert report.total == hand
    assert report.layers["conv2"] == 40 * 500 * 16 * 16 * 49


def test_macs_hand_count_resnet_and_depthwise():
    # resnet_c12 on 128 x 431: stem 3x3 1->12; max pool -> 64 x 215; block 12->12; block 12->24 stride 2
    # -> 32 x 108 with a 1x1 shortcut; block 24->48 stride 2 -> 16 x 54 with a 1x1 shortcut; fc 48->10.
    a, b, c = 64 * 215, 32 * 108, 16 * 54
    hand = (
        128 * 431 * 12 * 9
        + 2 * a * 12 * 12 * 9
        + b * 24 * 12 * 9
        + b * 24 * 24 * 9
        + b * 24 * 12
        + c * 48 * 24 * 9
        + c * 48 * 48 * 9
        + c * 48 * 24
        + 48 * 10
    )
    assert count_macs(create_model("resnet_c12")).total == hand
    dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
    dw.n_mels, dw.frames = 4, 5  # count_macs builds the input from these
    assert count_macs(dw, torch.zeros(1, 8, 4, 5)).total == 8 * 4 * 5 * 9


def test_int8_estimate_hand_count_baseline():
    # per conv/linear: int8 weights + float32 per-channel scales + float32 (folded) bias + its input's
    # scale (4 B) and zero point (1 B)
    layers = [(16, 1 * 49), (16, 16 * 49), (32, 16 * 49), (100, 64), (10, 100)]
    hand = sum(o * i + 4 * o + 4 * o + 5 for o, i in layers)
    assert model_size(create_model("dcase2021_baseline"), "int8").bytes == hand == 47_233


def test_cpresnet_rho_damping_and_grouping():
    m = CPResNet(width=8, blocks=(2, 1, 1), rho=5)
    assert m.kernels == [3, 3, 3, 3, 3, 1, 1, 1]
    smaller = sum(p.numel() for p in CPResNet(width=8, blocks=(2, 1, 1), rho=3).parameters())
    assert smaller < sum(p.numel() for p in m.parameters())
    conv = Conv2dDamped(2, 2, 5, padding=2)
    assert torch.allclose(conv.damping.flatten(), torch.tensor([0.01, 0.505, 1.0, 0.505, 0.01]))
    assert "damping" not in conv.state_dict()  # a fixed mask, not a stored parameter
    x = torch.randn(1, 2, 6, 6)
    manual = nn.functional.conv2d(x, conv.weight * conv.damping, conv.bias, padding=2)
    torch.testing.assert_close(conv(x), manual)
    plain = conv.eval().for_quantization()  # the damped kernel in a plain conv, for int8
    assert type(plain) is nn.Conv2d and plain.padding == (2, 2) and not plain.training
    torch.testing.assert_close(plain(x), manual)
    grouped = CPResNet(width=8, blocks=(1, 1, 1), rho=9, groups=(1, 2, 2))
    assert grouped.stages[2].conv1.groups == 2  # stage 2 (after the pooling layers of stage 1)


def test_trident_bands():
    m = TridentResNet(widths=(4, 8, 8), n_mels=32, frames=20)
    assert m.bands == (10, 10, 12) and len(m.branches) == 3
    with pytest.raises(ValueError, match="sum to 32"):
        TridentResNet(widths=(4, 8, 8), bands=(10, 10, 10), n_mels=32, frames=20)


def test_learning_rate_schedules(capsys):
    base = load_config(None, ["train.epochs=10", "train.lr=0.1"]).train
    cos = load_config(
        None, ["train.epochs=10", "train.lr=0.1", "train.schedule=cosine", "train.warmup_epochs=2"]
    )
    lin = load_config(
        None, ["train.epochs=10", "train.lr=0.1", "train.schedule=linear", "train.decay_start=5"]
    )
    assert [learning_rate(base, e) for e in (1, 10)] == [0.1, 0.1]
    assert learning_rate(cos.train, 1) == pytest.approx(0.05) and learning_rate(
        cos.train, 2
    ) == pytest.approx(0.1)
    assert learning_rate(cos.train, 6) == pytest.approx(0.05 * (1 + math.cos(math.pi * 0.5)))
    assert learning_rate(cos.train, 10) == pytest.approx(0.0, abs=1e-12)
    assert [learning_rate(lin.train, e) for e in (5, 6, 10)] == pytest.approx([0.1, 0.08, 0.0])
    # a decay that begins at or after the last epoch never begins (configs/cpresnet.yaml's decay_start
    # of 50 with its 250 epochs cut to 40): the rate stays at lr, never lr_min
    for start in (40, 50):
        overrides = ["train.epochs=40", "train.lr=1e-4", "train.schedule=linear", "train.warmup_epochs=2"]
        cut = load_config(None, [*overrides, f"train.decay_start={start}"]).train
        assert learning_rate(cut, 1) == pytest.approx(5e-5)
        assert [learning_rate(cut, e) for e in (2, 20, 39, 40)] == pytest.approx([1e-4] * 4)
        note_schedule(cut)
        assert f"decay would begin after epoch {start}" in capsys.readouterr().out
    note_schedule(lin.train)  # a decay that begins: nothing to say
    assert capsys.readouterr().out == ""
    with pytest.raises(ConfigError, match="train.optimizer"):
        load_config(None, ["train.optimizer=rmsprop"])
    with pytest.raises(ConfigError, match="train.schedule"):
        load_config(None, ["train.schedule=step"])


def test_train_a_zoo_model_through_the_cli(tiny_corpus, tmp_path):
    run = tmp_path / "run"
    args = [
        "train",
        "configs/trident.yaml",
        f"data.root={tiny_corpus}",
        f"data.cache_dir={tmp_path / 'cache'}",
        "train.epochs=2",
        "train.select_after=0",
        "train.batch_size=8",
        "--run-dir",
        str(run),
        "--quiet",
    ]
    assert main(args) == 0
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    assert records[0]["lr"] == pytest.approx(1e-3 / 3)  # first of 3 warm-up epochs
    assert all(r["train_clips"] > 0 and r["train_seconds"] > 0 for r in records)
    assert main(["size", str(run), "--json"]) == 0
    assert main(["evaluate", str(run)]) == 0


@pytest.mark.parametrize("path", sorted(p for p in glob.glob("configs/*.yaml") if "submission" not in p))
def test_every_config_is_valid_and_matches_its_model(path):
    cfg = load_config(path)  # every value is checked at load
    info = get_model_info(cfg.model.name)
    declared = FrontendConfig(**info.frontend)
    for key, value in {"n_mels": 40, **info.frontend}.items():
        if key not in ("duration", "trim_frames") or cfg.frontend.duration == declared.duration:
            assert getattr(cfg.frontend, key) == value, (path, key)
    if cfg.frontend.duration == declared.duration:
        assert cfg.frontend.n_frames == info.frames, path
    else:  # another clip length (the 1-s editions): the model is built for the frames it gives
        model = create_model(cfg.model.name, frames=cfg.frontend.n_frames, **cfg.model.params)
        assert model(torch.zeros(1, 1, cfg.frontend.n_mels, cfg.frontend.n_frames)).shape == (1, 10)


@pytest.mark.parametrize("name", ["dcase2021_baseline", "resnet_c12", "mobilenetv2_s", "separable_cnn_s"])
def test_models_trace_with_fx_and_keep_their_outputs(name):
    """FX symbolic tracing (memory.py's peak activations, PT2E) sees through the input check."""
    model = create_model(name).eval()
    traced = torch.fx.symbolic_trace(model)
    info = get_model_info(name)
    x = torch.randn(2, 1, info.n_mels, info.frames)
    with torch.no_grad():
        torch.testing.assert_close(traced(x), model(x))
    with pytest.raises(InputShapeError):
        model(torch.randn(1, 1, 8, 8))  # outside tracing the check still holds


def test_model_table_is_cached_under_a_key_of_its_source(tmp_path, monkeypatch):
    from tinyasc import zoo

    names = ["dcase2021_baseline", "resnet_c12"]
    rows = zoo.model_table(names, cache_dir=tmp_path)
    assert [r["name"] for r in rows] == names and rows[0]["bytes_float16"] == 93_004
    assert len(list(tmp_path.glob("models-*.json"))) == 1

    def never(name):
        raise AssertionError(f"{name} computed again")

    monkeypatch.setattr(zoo, "model_row", never)
    assert zoo.model_table(names, cache_dir=tmp_path) == rows  # read back, not recomputed
    monkeypatch.setattr(zoo, "table_key", lambda: "changed-source")
    with pytest.raises(AssertionError, match="computed again"):
        zoo.model_table(names, cache_dir=tmp_path)  # other code: a new key, computed anew


@pytest.fixture(scope="module")
def corpus_5s(tmp_path_factory):
    from tinyasc.data.synth import SynthSpec, write_corpus

    root = tmp_path_factory.mktemp("c5") / "corpus"
    write_corpus(root, SynthSpec(per_class_device=1, seed=0, duration=5.0), workers=2)
    return root


@pytest.mark.parametrize("config, frames", [("baseline", 250), ("resnet", 216)])
def test_five_second_clips_need_the_duration_alone(corpus_5s, tmp_path, config, frames):
    import torch

    from tinyasc.io import load_checkpoint

    run = tmp_path / "run"
    args = [
        "train",
        f"configs/{config}.yaml",
        f"data.root={corpus_5s}",
        f"data.cache_dir={tmp_path / 'cache'}",
        "frontend.duration=5",
        "train.epochs=1",
        "train.select_after=0",
        "--run-dir",
        str(run),
        "--quiet",
    ]
    assert main(args) == 0
    art = load_checkpoint(run / "model.pt")
    assert art["model_params"]["frames"] == frames and art["frontend"]["duration"] == 5.0
    assert main(["evaluate", str(run)]) == 0
    if config == "baseline":  # the official 500 frames keep the Keras pooling (4, 100)
        assert create_model("dcase2021_baseline").pool2.kernel_size == (4, 100)
        assert torch.equal(
            torch.tensor(create_model("dcase2021_baseline", frames=250).pool2.kernel_size),
            torch.tensor([4, 50]),
        )


def test_the_head_cost_is_stated_and_training_warns_over_budget(capsys):
    from tinyasc.config import load_config
    from tinyasc.train.run import warn_over_budget

    assert main(["size", "cpresnet_c20", "--classes", "50", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert "classifier head head.0: 8,000 bytes for 50 classes (160 per class)" in report["notes"]
    cfg = load_config("configs/cpresnet.yaml", ["model.name=cpresnet_c64"])
    warn_over_budget(create_model("cpresnet_c64", n_classes=50), cfg, 50)
    out = capsys.readouterr().out
    assert "cpresnet_c64 for 50 classes stores" in out and "over the 128,000-byte limit" in out
    warn_over_budget(create_model("dcase2021_baseline"), load_config(), 10)
    assert capsys.readouterr().out == ""  # within the limit: nothing to say


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape", [(3, 5, 8, 12), (2, 4, 9, 7)])
@pytest.mark.parametrize("ties", [False, True])
def test_fast_max_pool_equals_aten_values_and_gradients(dtype, shape, ties):
    """models.layers.MaxPool2d (pairwise maxima on NCHW CPU tensors) gives nn.MaxPool2d's outputs and
    gradients exactly, ties included (a map of three values ties in most windows), odd sizes too."""
    from tinyasc.models.layers import MaxPool2d

    g = torch.Generator().manual_seed(0)
    base = torch.randint(0, 3, shape, generator=g) if ties else torch.randn(shape, generator=g)
    upstream = torch.randn(shape[0], shape[1], shape[2] // 2, shape[3] // 2, generator=g).to(dtype)
    grads, outs = [], []
    for pool in (nn.MaxPool2d(2), MaxPool2d(2)):
        x = base.to(dtype).requires_grad_()
        y = pool(x)
        y.backward(upstream)
        outs.append(y.detach())
        grads.append(x.grad)
        with torch.no_grad():  # the path without masks
            assert torch.equal(pool(x), y.detach())
    assert torch.equal(outs[0], outs[1])
    assert torch.equal(grads[0], grads[1])
    # channels_last input takes ATen's own kernel and gives the same values
    x_cl = base.to(dtype).contiguous(memory_format=torch.channels_last)
    assert torch.equal(MaxPool2d(2)(x_cl), outs[0])


def test_fast_max_pool_stays_out_of_graph_capture():
    """FX tracing (memory.py) and torch.export (ONNX) see ATen's max_pool2d, not the custom function."""
    from tinyasc.models.layers import MaxPool2d

    traced = torch.fx.symbolic_trace(nn.Sequential(MaxPool2d(2)))
    assert any(n.target is torch.nn.functional.max_pool2d for n in traced.graph.nodes)
    program = torch.export.export(nn.Sequential(MaxPool2d(2)), (torch.randn(1, 2, 4, 4),))
    assert any("max_pool2d" in str(n.target) for n in program.graph.nodes)


@pytest.mark.parametrize("name", MODELS)
def test_every_model_trains_in_its_memory_format_on_five_second_clips(name):
    """Forward and backward in the layout training uses (channels_last unless the family says not) at
    the 216 frames of a 5-s clip: the plain strided 1x1 convolution of resnet_c12 crashed oneDNN's
    weight gradient there (segmentation fault), which StridedPointwise avoids."""
    info = get_model_info(name)
    model = create_model(name, n_classes=10, frames=216).train()
    fmt = torch.channels_last if model.channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    x = torch.randn(2, 1, info.n_mels, 216).contiguous(memory_format=fmt)
    model(x).sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_strided_pointwise_equals_the_strided_convolution():
    from tinyasc.models.resnet import StridedPointwise

    torch.manual_seed(0)
    fast = StridedPointwise(12, 24, 1, stride=2, bias=False)
    plain = nn.Conv2d(12, 24, 1, stride=2, bias=False)
    plain.load_state_dict(fast.state_dict())
    for f, t in ((64, 108), (63, 107)):
        x1 = torch.randn(2, 12, f, t, requires_grad=True)
        x2 = x1.detach().clone().requires_grad_()
        y1, y2 = fast(x1), plain(x2)
        assert y1.shape == y2.shape and torch.allclose(y1, y2, atol=1e-6)
        y1.sum().backward()
        y2.sum().backward()
        assert torch.allclose(x1.grad, x2.grad, atol=1e-6)
        assert torch.allclose(fast.weight.grad, plain.weight.grad, atol=1e-4)
    back = fast.for_quantization()
    assert type(back) is nn.Conv2d and back.stride == (2, 2) and torch.equal(back.weight, fast.weight)
