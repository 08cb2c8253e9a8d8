import torch

from tinyasc.cli import main
from tinyasc.compress.size import fold_batchnorm, model_size
from tinyasc.models import create_model


def _trained_like(seed=0):
    """The baseline with every parameter and BN statistic non-zero, as after training."""
    torch.manual_seed(seed)
    m = create_model("dcase2021_baseline")
    with torch.no_grad():
        for t in list(m.parameters()) + [b for n, b in m.named_buffers() if "running" in n]:
            t.copy_(torch.rand_like(t) + 0.1)
    return m.eval()


def test_baseline_parameter_count_as_keras():
    m = create_model("dcase2021_baseline")
    rows = {r.name: r.params for r in model_size(m, "float32").rows}
    assert rows == {
        "conv1": 800,
        "bn1": 64,
        "conv2": 12560,
        "bn2": 64,
        "conv3": 25120,
        "bn3": 128,
        "dense1": 6500,
        "dense2": 1010,
    }
    assert sum(rows.values()) == 46246


def test_baseline_sizes_match_reference():
    m = _trained_like()
    assert model_size(m, "float16").nonzero_bytes == 93004  # Keras float16, BN float32
    assert model_size(m, "float16-all").nonzero_bytes == 92492  # 46,246 x 2 = 90.3 KB
    folded = model_size(m, "float16-folded")
    assert folded.params == 45990 and folded.nonzero_bytes == 91980  # TFLite float16
    assert model_size(m, "float32").nonzero_bytes == 46246 * 4


def test_zeros_are_free_and_table_prints_verdict():
    m = _trained_like()
    with torch.no_grad():
        w = m.conv3.weight
        w[: w.shape[0] // 2] = 0  # half of conv3 pruned
    r = model_size(m, "float16")
    assert r.nonzero_bytes == 93004 - 25088 // 2 * 2
    table = r.table()
    assert "| Total" in table and "93,004 bytes (90.82 KB)" in table and "PASS" in table


def test_fold_batchnorm_keeps_outputs():
    m = _trained_like()
    x = torch.randn(2, 1, 40, 500)
    torch.testing.assert_close(fold_batchnorm(m)(x), m(x), rtol=1e-4, atol=1e-4)


def test_size_cli_exit_code_on_limit(capsys):
    assert main(["size", "dcase2021_baseline"]) == 0
    assert "batch norm kept-float32" in capsys.readouterr().out
    assert main(["size", "dcase2021_baseline", "--limit", "50000"]) == 1
    assert "FAIL" in capsys.readouterr().out
