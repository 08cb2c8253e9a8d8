"""The editions' complexity rules: torchinfo's counts reproduced, hand counts, verdicts, the CLI."""

from __future__ import annotations

import json

import pytest
import torch

from tinyasc.cli import main
from tinyasc.compress.complexity import parameter_bytes, torchinfo_counts, verdict
from tinyasc.compress.size import storage_tensors
from tinyasc.models import create_model, list_models
from tinyasc.rules import RULES, get_rules


def test_the_2022_baseline_at_one_second_by_hand():
    # 40 x 51 log-mel; conv 7x7 16 -> BN -> conv 7x7 16 -> BN -> pool 5x5 -> conv 7x7 32 -> BN -> pool
    # (4, 10) -> dense 100 -> dense 10. torchinfo: conv (weights + bias) x output positions, BN 2 per
    # channel once, a linear layer its weights + biases once.
    conv1 = (16 * 1 * 49 + 16) * 40 * 51
    conv2 = (16 * 16 * 49 + 16) * 40 * 51
    conv3 = (32 * 16 * 49 + 32) * 8 * 10
    bn = 2 * 16 + 2 * 16 + 2 * 32
    dense = (64 * 100 + 100) + (100 * 10 + 10)
    params = (16 * 49 + 16) + (16 * 16 * 49 + 16) + (32 * 16 * 49 + 32) + bn + dense
    c = torchinfo_counts(create_model("dcase2021_baseline", frames=51))
    assert (c.params, c.macs) == (params, conv1 + conv2 + conv3 + bn + dense) == (46_118, 29_271_638)


def test_the_2024_baseline_network_has_the_published_parameters_and_macs():
    # CPJKU/dcase2024_task1_baseline README: 61,148 parameters, 29,419,156 MACs; its worked example,
    # stages[0].b3.block[1] (depthwise 3x3 of 64 channels to 64 x 9, BN): 704 parameters, 331,904 MACs
    model = create_model("cpmobile_dcase2024")
    c = torchinfo_counts(model)
    assert (c.params, c.macs) == (61_148, 29_419_156)
    block = model.stages[2].block[1]  # the third block's depthwise conv + BN
    assert sum(p.numel() for p in block.parameters()) == 704
    assert c.layers["stages.2.block.1.0"] + c.layers["stages.2.block.1.1"] == 331_904


@pytest.mark.parametrize("name", list_models())
def test_counts_equal_torchinfo(name):
    torchinfo = pytest.importorskip("torchinfo")
    model = create_model(name)
    s = torchinfo.summary(model, input_size=(1, 1, model.n_mels, model.frames), verbose=0)
    c = torchinfo_counts(model)
    assert (c.params, c.macs) == (s.total_params, s.total_mult_adds)


def _verdict(rules: str, name: str, precision: str, **params):
    model = create_model(name, **params)
    seconds = 1.0 if name == "cpmobile_dcase2024" or params.get("frames") == 51 else 10.0
    stored = parameter_bytes(storage_tensors(model, precision))
    return verdict(get_rules(rules), model, seconds, stored, stored)


def test_verdicts_follow_each_edition():
    # 2022: every parameter at one byte, whatever the storage; 30 M MACs per second; 1-s clips
    v = _verdict("dcase2022", "dcase2021_baseline", "float32", frames=51)
    assert v.passes and (v.counted, v.unit) == (46_118, "parameters")
    v = _verdict("dcase2022", "dcase2021_baseline", "float16")
    assert not v.passes and any("1-s clips" in r for r in v.reasons)
    v = _verdict("dcase2022", "bcresnet_asc_c40", "float16")  # 85,730 parameters, 200 M MACs per 10 s
    assert [r for r in v.reasons if "MACs" in r] == [] and any("1-s clips" in r for r in v.reasons)
    # 2024: parameter bytes at the storage type (BN statistics are buffers, not counted)
    assert _verdict("dcase2024", "cpmobile_dcase2024", "float16-all").counted == 61_148 * 2
    v = _verdict("dcase2024", "cpmobile_dcase2024", "float32")
    assert not v.passes and v.counted == 61_148 * 4 and "over the limit" in v.reasons[0]
    # MACs over the limit
    v = _verdict("dcase2023", "cpmobile_dcase2024", "float16-all", multiplier=2.3, expansion=3.0)
    assert any("MACs per second" in r for r in v.reasons)


def test_every_edition_is_defined_once():
    assert list(RULES) == ["dcase2021", "dcase2022", "dcase2023", "dcase2024", "dcase2025"]
    assert RULES["dcase2025"].device_specific and RULES["dcase2024"].subsets == (5, 10, 25, 50, 100)
    with pytest.raises(ValueError, match="expected one of dcase2021"):
        get_rules("dcase2019")


def test_size_rules_on_the_command_line(capsys):
    assert main(["size", "--rules", "dcase2024", "cpmobile_dcase2024"]) == 0
    out = capsys.readouterr().out
    assert "122,296 bytes (limit 128,000)" in out and "29,419,156" in out and out.strip().endswith("PASS")
    assert main(["size", "--rules", "dcase2022", "dcase2021_baseline"]) == 1
    assert "FAIL: the model reads 10-s clips" in capsys.readouterr().out


def test_parameter_bytes_leave_out_running_statistics():
    bn = torch.nn.BatchNorm2d(4)
    tensors = list(bn.state_dict().items())
    assert parameter_bytes(tensors) == 2 * 4 * 4  # weight and bias at float32


def test_models_table_under_an_editions_rules(capsys):
    assert main(["models", "--rules", "dcase2022", "cpmobile_dcase2024", "cpresnet_c20", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["cpmobile_dcase2024"]["passes"] and rows["cpmobile_dcase2024"]["input"] == [256, 65]
    cp = rows["cpresnet_c20"]  # built for 1 s (44 frames): 31,041,020 MACs, over the 30 M limit
    assert cp["input"] == [256, 44] and cp["macs"] == 31_041_020 and not cp["passes"]
    assert main(["models", "--rules", "dcase2024", "cpresnet_c20"]) == 0
    assert "FAIL (MACs)" in capsys.readouterr().out
