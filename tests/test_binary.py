"""1-bit weights: sign times the per-layer scale forward, straight-through gradient, any registered model."""

import math

import pytest
import torch
import torch.nn.functional as F

from tests.conftest import train_args
from tinyasc.artifact import build_model
from tinyasc.cli import main
from tinyasc.compress.binary import BinaryConv2d, BinaryLinear, binarize


def test_forward_is_sign_times_scale_and_gradient_passes_straight_through():
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 4, 3, padding=1, bias=False)
    binarize(torch.nn.Sequential(conv), keep=())
    assert isinstance(conv, BinaryConv2d)
    x = torch.randn(2, 3, 5, 5)
    scale = math.sqrt(2 / (3 * 9))
    wb = torch.where(conv.weight >= 0, 1.0, -1.0) * scale
    torch.testing.assert_close(conv(x), F.conv2d(x, wb, padding=1))
    conv(x).square().sum().backward()
    wb_leaf = wb.detach().requires_grad_(True)
    F.conv2d(x, wb_leaf, padding=1).square().sum().backward()
    torch.testing.assert_close(conv.weight.grad, wb_leaf.grad * scale)  # d sign / d w taken as 1


def test_binarize_keeps_first_and_last_and_validates():
    m = build_model("resnet_c12", 10, {"binary": True})
    assert m.binary_layers and "trunk.0.0" not in m.binary_layers and "fc" not in m.binary_layers
    assert isinstance(m.trunk[2].conv1, BinaryConv2d) and not isinstance(m.fc, BinaryLinear)
    out = m(torch.randn(2, 1, 128, 431))
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    out.sum().backward()
    with pytest.raises(ValueError, match="not conv or linear layers"):
        build_model("resnet_c12", 10, {"binary": True, "binary_keep": ["nope"]})
    with pytest.raises(ValueError, match="binary scale"):
        build_model("resnet_c12", 10, {"binary": True, "binary_scale": "median"})
    lin = torch.nn.Linear(4, 2)
    binarize(torch.nn.Sequential(lin), keep=(), scale="mean")
    torch.testing.assert_close(
        lin(torch.ones(1, 4)),
        F.linear(torch.ones(1, 4), torch.sign(lin.weight) * lin.weight.abs().mean(), lin.bias),
    )


def test_binary_model_trains_and_evaluates_through_the_cli(tiny_corpus, tmp_path):
    extra = ["model.params={binary: true}"]
    assert main(train_args(tiny_corpus, tmp_path / "run", tmp_path / "cache", 1, extra)) == 0
    assert main(["evaluate", str(tmp_path / "run")]) == 0
