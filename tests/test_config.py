import pytest

from tinyasc.config import ConfigError, load_config


def test_defaults_are_the_baseline():
    cfg = load_config()
    assert (cfg.frontend.win_length, cfg.frontend.hop_length, cfg.frontend.n_fft) == (1764, 882, 2048)
    assert (cfg.frontend.n_mels, cfg.frontend.frames) == (40, 500)
    assert (cfg.train.lr, cfg.train.batch_size, cfg.train.epochs, cfg.train.select_after) == (
        1e-3,
        16,
        200,
        50,
    )


def test_yaml_then_overrides(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("train:\n  epochs: 7\nmodel:\n  name: dcase2021_baseline\n")
    cfg = load_config(p, ["train.epochs=3", "data.train_devices=[a]", "model.params={dropout: 0.1}"])
    assert cfg.train.epochs == 3 and cfg.data.train_devices == ("a",) and cfg.model.params == {"dropout": 0.1}
    assert cfg.hash() != load_config(p).hash()


@pytest.mark.parametrize(
    "override, needle",
    [
        ("train.epoch=3", "unknown config key train.'epoch'"),
        ("train.epochs=abc", "train.epochs: expected int"),
        ("train", "expected key=value"),
    ],
)
def test_bad_overrides_name_the_key(override, needle):
    with pytest.raises(ConfigError) as e:
        load_config(None, [override])
    assert needle in str(e.value)
