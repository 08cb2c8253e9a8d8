import pytest
import torch

from tinyasc.compress.size import model_size
from tinyasc.config import load_config
from tinyasc.models import create_model, get_model_info
from tinyasc.models.bcresnet import ResNorm, SubSpectralNorm
from tinyasc.models.registry import InputShapeError


@pytest.mark.parametrize("width, params", [(20, 24970), (40, 85730), (80, 314650)])
def test_parameter_counts_match_reference(width, params):
    m = create_model(f"bcresnet_asc_c{width}")
    assert sum(p.numel() for p in m.parameters()) == params
    assert sum(p.numel() for p in create_model("bcresnet_asc_c80", sub_bands=1).parameters()) == 306730


def test_forward_backward_and_shapes():
    torch.manual_seed(0)
    m = create_model("bcresnet_asc_c20")
    x = torch.randn(3, 1, 256, 431)
    out = m(x)
    assert out.shape == (3, 10) and torch.isfinite(out).all()
    out.sum().backward()
    assert all(p.grad is not None for p in m.parameters())
    m.eval()
    assert torch.equal(m(x), m(x))
    with pytest.raises(InputShapeError, match=r"expected \(batch, 1, 256, 431\)"):
        m(torch.randn(1, 1, 40, 500))


def test_resnorm_and_subspectralnorm():
    x = torch.randn(2, 4, 8, 16) * 3 + 5
    y = ResNorm(0.1)(x) - 0.1 * x
    assert torch.allclose(y.mean(dim=(1, 3)), torch.zeros(2, 8), atol=1e-5)
    assert torch.allclose(y.var(dim=(1, 3), unbiased=False), torch.ones(2, 8), atol=1e-3)
    ssn = SubSpectralNorm(4, 4).train()
    z = ssn(x)
    band = z[:, :, :2, :]  # the first sub-band of every channel is normalised on its own
    assert torch.allclose(band.mean(dim=(0, 2, 3)), torch.zeros(4), atol=1e-5)
    with pytest.raises(ValueError, match="sub-bands"):
        SubSpectralNorm(4, 3)(x)


def _resnorm_by_autograd(x: torch.Tensor, lam: float = 0.1, eps: float = 1e-5) -> torch.Tensor:
    mean = x.mean(dim=(1, 3), keepdim=True)
    var = x.var(dim=(1, 3), keepdim=True, unbiased=False)
    return (x - mean) / torch.sqrt(var + eps) + lam * x


def test_resnorm_gradient_and_layout():
    torch.manual_seed(0)
    x = (torch.randn(2, 3, 4, 5, dtype=torch.float64) * 2 + 1).requires_grad_()
    assert torch.autograd.gradcheck(ResNorm(0.1), (x,))
    x = (torch.randn(2, 6, 8, 10) * 3 + 2).requires_grad_()
    grad = torch.randn(2, 6, 8, 10)
    y = ResNorm(0.1)(x)
    assert y.is_contiguous() and torch.allclose(y, _resnorm_by_autograd(x), atol=1e-5)
    (got,) = torch.autograd.grad(y, x, grad)
    (want,) = torch.autograd.grad(_resnorm_by_autograd(x), x, grad)
    assert got.is_contiguous() and torch.allclose(got, want, atol=1e-5)
    # under CPU bfloat16 autocast a bfloat16 map stays bfloat16, its gradient too
    xb = x.detach().bfloat16().requires_grad_()
    with torch.autocast("cpu", torch.bfloat16):
        yb = ResNorm(0.1)(xb)
    assert yb.dtype == torch.bfloat16 and torch.allclose(
        yb.float(), _resnorm_by_autograd(xb.float()), atol=0.05
    )
    (gb,) = torch.autograd.grad(yb, xb, grad.bfloat16())
    assert gb.dtype == torch.bfloat16 and torch.allclose(gb.float(), want, atol=0.05)


def test_config_matches_the_registered_frontend():
    cfg = load_config("configs/bcresnet.yaml")
    info = get_model_info(cfg.model.name)
    assert (cfg.frontend.n_mels, cfg.frontend.n_frames) == (info.n_mels, info.frames)
    assert 1 + 441000 // cfg.frontend.hop_length == cfg.frontend.n_frames
    assert model_size(create_model("bcresnet_asc_c20"), "float16-all").nonzero_bytes <= 128000


def test_resnorm_exports_by_reductions_without_transposes(tmp_path):
    import onnx

    from tinyasc.export import export_module

    torch.manual_seed(0)
    norm = ResNorm(0.1)
    for x in (torch.randn(2, 40, 32, 54), torch.randn(2, 8, 4, 16) * 2 + 20):  # a map far from zero too
        assert torch.allclose(norm.by_reductions(x), norm(x), atol=1e-4, rtol=1e-5)
    x = torch.randn(2, 40, 32, 54) * 30  # float16 squares of such a map overflow; its statistics do not
    half = norm.by_reductions(x.half())
    assert half.dtype == torch.float16 and torch.allclose(half.float(), norm(x), atol=0.05)
    # the exported graph takes the reductions' form: no transposed copies of the map
    model = create_model("bcresnet_asc_c20").eval()
    export_module(model, torch.zeros(1, 1, 256, 431), tmp_path / "m.onnx")
    ops = {node.op_type for node in onnx.load(str(tmp_path / "m.onnx")).graph.node}
    assert "Transpose" not in ops and "LayerNormalization" not in ops and "ReduceMean" in ops


def test_conv1x1_computes_what_conv2d_does():
    from tinyasc.compress.binary import binarize
    from tinyasc.models.layers import Conv1x1

    torch.manual_seed(0)
    for bias in (False, True):
        fast = Conv1x1(6, 4, bias=bias)
        plain = fast.for_quantization()
        assert type(plain) is torch.nn.Conv2d
        x = torch.randn(3, 6, 5, 7, requires_grad=True)
        y, want = fast(x), plain(x)
        assert torch.allclose(y, want, atol=1e-6)
        grad = torch.randn_like(y)
        got = torch.autograd.grad(y, [x, *fast.parameters()], grad)
        ref = torch.autograd.grad(want, [x, *plain.parameters()], grad)
        assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(got, ref, strict=True))
        with torch.autocast("cpu", torch.bfloat16):  # autocast's dtype, as conv2d
            yb, wantb = fast(x), plain(x)
        assert yb.dtype == wantb.dtype == torch.bfloat16 and torch.allclose(
            yb.float(), wantb.float(), atol=0.05
        )
        with torch.no_grad():
            assert torch.allclose(fast(x), want, atol=1e-6)
            # channels_last takes nn.Conv2d's own path, with the same result
            assert torch.allclose(fast(x.contiguous(memory_format=torch.channels_last)), want, atol=1e-6)
    x = torch.randn(2, 3, 4, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(Conv1x1(3, 2).double(), (x,))
    # compression treats it as the plain convolution: MACs, 1-bit layers
    from tinyasc.compress.macs import count_macs

    model = create_model("bcresnet_asc_c20")
    ones = [n for n, m in model.named_modules() if isinstance(m, Conv1x1)]
    assert "body.1.pre.0" in ones and "body.1.f1.3" in ones
    macs = count_macs(model.eval()).layers
    assert macs["body.1.pre.0"] == 20 * 128 * 216 * 40  # output elements x input channels
    assert set(ones) <= set(binarize(model))


def test_frequency_mean_is_the_mean_over_frequency():
    from tinyasc.models.bcresnet import frequency_mean

    torch.manual_seed(0)
    for f in (128, 12):  # a power of two and not
        x = (torch.randn(2, 3, f, 7) * 2 + 1).requires_grad_()
        y = frequency_mean(x)
        assert y.shape == (2, 3, 1, 7) and torch.allclose(y, x.mean(dim=2, keepdim=True), atol=1e-6)
        grad = torch.randn_like(y)
        (got,) = torch.autograd.grad(y, x, grad)
        assert torch.allclose(got, grad.expand_as(x) / f)
        with torch.autocast("cpu", torch.bfloat16):
            yb = frequency_mean(x.detach().bfloat16())
        assert yb.dtype == torch.bfloat16 and torch.allclose(yb.float(), y, atol=0.02)


def _layered_copy(model):
    import copy

    layered = copy.deepcopy(model)
    layered.fuse_stem = False
    return layered


def test_fused_stem_computes_the_layered_stem():
    """Training takes bcresnet.fused_stem (head, first ResNorm and first 1x1 convolution composed):
    the same logits, gradients and batch-norm statistics as the layers one by one."""
    torch.manual_seed(0)
    for kw in ({}, {"resnorm": False}, {"frames": 101}):
        model = create_model("bcresnet_asc_c20", **kw).double().train()
        for m in model.modules():
            if isinstance(m, torch.nn.Dropout2d):
                m.p = 0.0  # the two forms draw their dropout masks alike, but without them is plainer
        layered = _layered_copy(model)
        x = torch.randn(3, 1, 256, kw.get("frames", 431), dtype=torch.float64) * 2 + 1
        assert model.stem_fusable(x) and not layered.stem_fusable(x)
        y, want = model(x), layered(x)
        assert torch.allclose(y, want, rtol=0, atol=1e-12)
        target = torch.tensor([0, 3, 7])
        got = torch.autograd.grad(torch.nn.functional.cross_entropy(y, target), list(model.parameters()))
        ref = torch.autograd.grad(torch.nn.functional.cross_entropy(want, target), list(layered.parameters()))
        for a, b in zip(got, ref, strict=True):
            assert torch.allclose(a, b, rtol=1e-9, atol=1e-14)
        bn, bn_ref = model.body[1].pre[1], layered.body[1].pre[1]
        assert torch.allclose(bn.running_mean, bn_ref.running_mean) and torch.allclose(
            bn.running_var, bn_ref.running_var
        )


def test_fused_stem_precision_and_when_it_is_taken(monkeypatch):
    from tinyasc.compress.binary import binarize
    from tinyasc.models import bcresnet

    torch.manual_seed(0)
    model = create_model("bcresnet_asc_c20").train()
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout2d):
            m.p = 0.0
    layered = _layered_copy(model)
    x = torch.randn(2, 1, 256, 431) * 2 + 1
    # float32 and bfloat16: as close to the float64 logits as the layered form, or closer; in float32
    # also on an input far from zero mean
    for dtype, tol, offset in ((None, 1e-5, 0), (None, 1e-5, 1000), (torch.bfloat16, 0.05, 0)):
        exact = _layered_copy(model).double()(x.double() + offset)
        with torch.autocast("cpu", dtype or torch.float32, enabled=dtype is not None):
            y, want = model(x + offset), layered(x + offset)
        assert y.dtype == want.dtype
        err, err_ref = (y.double() - exact).abs().max(), (want.double() - exact).abs().max()
        assert err < tol and err <= 2 * err_ref + 1e-7, (dtype, offset, err, err_ref)

    calls = []
    real = bcresnet.fused_stem
    monkeypatch.setattr(bcresnet, "fused_stem", lambda *a: calls.append(1) or real(*a))
    model(x)
    assert calls == [1]
    # evaluation (MAC counts, size reports, exports walk the layers), a strided input, hooks on the
    # composed layers and layers swapped for others keep the layered form
    assert not model.eval().stem_fusable(x)
    model.train()
    assert not model.stem_fusable(x[..., ::2])
    handle = model.head.register_forward_hook(lambda *a: None)
    assert not model.stem_fusable(x)
    handle.remove()
    assert model.stem_fusable(x)
    binarize(model)  # the first 1x1 convolution becomes a 1-bit layer
    assert not model.stem_fusable(x)
    model(x)
    assert calls == [1]


def test_frequency_conv_computes_what_conv2d_does(monkeypatch):
    from tinyasc.compress.binary import binarize
    from tinyasc.compress.macs import count_macs
    from tinyasc.models import bcresnet
    from tinyasc.models.bcresnet import FrequencyConv, _BandedFrequencyConv

    torch.manual_seed(0)
    fast = FrequencyConv(6).train()
    plain = fast.for_quantization()
    assert type(plain) is torch.nn.Conv2d and plain.groups == 6 and plain.kernel_size == (3, 1)
    x = torch.randn(3, 6, 16, 7, requires_grad=True)
    grad = torch.randn(3, 6, 16, 7).bfloat16()
    # training under bfloat16 autocast: the banded products; the output equal to the convolution's,
    # the gradients within bfloat16's rounding
    with torch.autocast("cpu", torch.bfloat16):
        y, want = fast(x), plain(x)
    assert y.dtype == want.dtype == torch.bfloat16 and torch.equal(y, want)
    got = torch.autograd.grad(y, [x, fast.weight], grad)
    ref = torch.autograd.grad(want, [x, plain.weight], grad)
    for a, b in zip(got, ref, strict=True):
        assert a.dtype == b.dtype and torch.allclose(a, b, rtol=0.02, atol=0.02 * b.abs().max().item())
    # the function itself, in float64: gradcheck (the first and last bins see the zero padding)
    xd = torch.randn(2, 3, 5, 4, dtype=torch.float64, requires_grad=True)
    wd = torch.randn(3, 1, 3, 1, dtype=torch.float64, requires_grad=True)
    assert torch.allclose(
        _BandedFrequencyConv.apply(xd, wd), torch.nn.functional.conv2d(xd, wd, padding=(1, 0), groups=3)
    )
    assert torch.autograd.gradcheck(_BandedFrequencyConv.apply, (xd, wd))
    # float32 training, evaluation and a strided input take the convolution itself
    calls = []
    monkeypatch.setattr(bcresnet._BandedFrequencyConv, "apply", lambda *a: calls.append(1))
    assert torch.allclose(fast.train()(x), plain(x), atol=1e-6)
    with torch.autocast("cpu", torch.bfloat16):
        assert torch.equal(fast.eval()(x), plain(x))
        assert torch.equal(fast.train()(x[..., ::2]), plain(x[..., ::2]))
        fast(x)
    assert calls == [1]  # only the last call took the products
    # compression and MAC counts see an nn.Conv2d
    model = create_model("bcresnet_asc_c20")
    freq = [n for n, m in model.named_modules() if isinstance(m, FrequencyConv)]
    assert "body.1.f2.0" in freq and len(freq) == 9
    assert count_macs(model.eval()).layers["body.1.f2.0"] == 20 * 128 * 216 * 3
    assert set(freq) <= set(binarize(model))
