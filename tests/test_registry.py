"""Every registered model through int8 storage and ONNX export (the whole registry runs under -m slow).

Random initial weights give near-zero logits (zero-initialised last layers, batch norm at its initial
statistics), which no int8 grid resolves; each model first sets its batch-norm statistics on the
input, as training would, so the comparison is of a model with a realistic output scale.
"""

import io
import warnings

import numpy as np
import pytest
import torch

from tinyasc import artifact
from tinyasc.export import TOLERANCE, onnx_bytes
from tinyasc.frontend import Normalizer
from tinyasc.models import create_model, get_model_info, list_models

FAST = {"dcase2021_baseline", "resnet_c12"}  # the default suite's share; -m slow runs the rest


def _every_model():
    return [pytest.param(n, marks=[] if n in FAST else [pytest.mark.slow]) for n in list_models()]


def _settled(name: str, n: int = 16) -> tuple[torch.nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    model = create_model(name)
    info = get_model_info(name)
    x = torch.randn(n, 1, info.n_mels, info.frames)
    model.train()
    with torch.no_grad():
        for _ in range(3):  # running batch-norm statistics of this input
            model(x)
    return model.eval(), x


def _through_a_file(art: dict) -> dict:
    buf = io.BytesIO()
    torch.save(art, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


@pytest.mark.parametrize("name", _every_model())
def test_int8_round_trip_stays_close_to_float(name):
    model, x = _settled(name)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # quantising warns about nothing
        state, extra = artifact.stored_state(model, "int8", lambda: [x[:8], x[8:]])
        art = _through_a_file(
            dict(model_name=name, model_params={}, classes=[str(i) for i in range(10)], storage="int8")
            | {"state": state, **extra}
        )
        q = artifact.load_stored(art)
        with torch.no_grad():
            f, g = model(x), q(x)
    rel = float((f - g).norm() / f.norm())
    agree = float((f.argmax(1) == g.argmax(1)).float().mean())
    assert rel < 0.1 and agree >= 0.75, (rel, agree)
    assert (
        artifact.size_report(art).nonzero_bytes
        < artifact.size_report({"storage": "float32", "state": model.state_dict()}).nonzero_bytes
    )


@pytest.mark.parametrize("name", _every_model())
def test_onnx_float32_export_agrees_with_pytorch(name, tmp_path):
    onnx = pytest.importorskip("onnx")
    model, x = _settled(name, 8)
    info = get_model_info(name)
    norm = Normalizer(info.n_mels)  # identity statistics: the input is already normal
    data, check = onnx_bytes(model, norm, 1.0, "float32", x.numpy().astype(np.float32), tmp_dir=tmp_path)
    graph = onnx.load_from_string(data).graph
    assert [i.name for i in graph.input] == ["logmel"] and [o.name for o in graph.output] == [
        "logits",
        "probabilities",
    ]
    assert check["max_abs_probability_difference"] <= TOLERANCE["float32"]
    assert check["same_decisions"] == 1.0
