"""Peak activation memory of one inference, against hand counts."""

import json

import torch
from torch import nn

from tinyasc.cli import main
from tinyasc.compress.memory import activation_memory
from tinyasc.models import create_model


def test_baseline_peak_by_hand():
    # conv1 gives 16 x 40 x 500 = 320,000 values; batch norm writes another 320,000 while they live:
    # 640,000 float32 values = 2,560,000 bytes, the largest pair of live tensors of the network
    r = activation_memory(create_model("dcase2021_baseline"))
    assert (r.peak_bytes, r.peak_at, r.input_bytes) == (2_560_000, "bn1", 80_000)
    assert activation_memory(create_model("dcase2021_baseline"), bytes_per_value=1).peak_bytes == 640_000


class _Small(nn.Module):
    n_mels, frames = 4, 5

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3, padding=1)
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(3 * 4 * 5, 2)

    def forward(self, x):
        y = self.drop(self.conv(x))  # dropout at inference: a view, nothing allocated
        return self.fc(y.flatten(1))  # flatten: a view


def test_views_allocate_nothing_and_tensors_die_after_their_last_use():
    # input 20 values; conv 60 (input still live: 80); dropout and flatten are views; fc 2 (conv's 60 live)
    r = activation_memory(_Small(), torch.zeros(1, 1, 4, 5))
    assert (r.peak_bytes, r.peak_at) == (80 * 4, "conv")


def test_size_and_models_report_it(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("TINYASC_CACHE", str(tmp_path))
    assert main(["size", "dcase2021_baseline", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["peak_activation_bytes"] == 2_560_000
    assert main(["models", "dcase2021_baseline", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["peak_activation_bytes"] == 2_560_000
