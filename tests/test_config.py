import re

import pytest

from tinyasc.config import ConfigError, load_config


def test_defaults_are_the_baseline():
    cfg = load_config()
    assert (cfg.frontend.win_length, cfg.frontend.hop_length, cfg.frontend.n_fft) == (1764, 882, 2048)
    assert (cfg.frontend.n_mels, cfg.frontend.n_frames) == (40, 500)
    assert (cfg.train.lr, cfg.train.batch_size, cfg.train.epochs, cfg.train.select_after) == (
        1e-3,
        16,
        200,
        51,  # the official callback's first selectable epoch is the 52nd
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


def _constrained_keys():
    """(dotted key, a bad value) for every config key with choices or a range, from the dataclasses."""
    import dataclasses
    import typing

    from tinyasc.config import Config

    cases = []

    def walk(cls, prefix):
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            if dataclasses.is_dataclass(default):
                walk(type(default), f"{prefix}{f.name}.")
                continue
            hint = hints[f.name]
            args = [a for a in typing.get_args(hint) if a is not type(None)]
            literal = typing.get_origin(hint) is typing.Literal or any(
                typing.get_origin(a) is typing.Literal for a in args
            )
            if literal:
                cases.append((f"{prefix}{f.name}", "no-such-choice"))
            if "range" in f.metadata:
                lo, hi, lo_open, _ = f.metadata["range"]
                cases.append((f"{prefix}{f.name}", lo if lo_open else lo - 1))
                if hi != float("inf"):
                    cases.append((f"{prefix}{f.name}", hi + 1))

    walk(Config, "")
    return cases


CONSTRAINED = _constrained_keys()


def test_the_constrained_keys_cover_every_section():
    sections = {key.split(".")[0] for key, _ in CONSTRAINED}
    assert sections == {
        "frontend",
        "data",
        "train",
        "augment",
        "prune",
        "quantize",
        "calibration_clips",
        "rules",
        "model",
    }
    assert len(CONSTRAINED) > 60


@pytest.mark.parametrize("key, bad", CONSTRAINED, ids=[f"{k}={v}" for k, v in CONSTRAINED])
def test_a_bad_value_fails_at_load_naming_the_key(key, bad, tmp_path):
    root = tmp_path / "no-such-dataset"  # never read: the error comes before any data
    with pytest.raises(ConfigError) as e:
        load_config(None, [f"data.root={root}", f"{key}={bad}"])
    assert key in str(e.value)
    assert not root.exists()


@pytest.mark.parametrize(
    "overrides, needle",
    [
        (["train.lr=0.01", "train.lr_min=0.1"], "train.lr_min"),
        (["prune.target=0.5", "train.epochs=5", "prune.ramp_epochs=10"], "prune.ramp_epochs"),
        (["augment.mixstyle_p=0.5", "augment.mixstyle_alpha=0"], "augment.mixstyle_alpha"),
        (["quantize=binary"], "model.params={binary: true}"),
        (["quantize=int8", "model.params={binary: true}"], "conflict"),
        (["frontend.win_length=4096"], "frontend.win_length"),
        (["frontend.fmin=100", "frontend.fmax=50"], "frontend.fmax"),
        (["data.classes=[a, b, a]"], "data.classes: a given more than once"),
        (["data.classes=abc"], "data.classes: expected list"),
        (["train.device=gpu"], "train.device"),
    ],
)
def test_rules_across_keys_fail_at_load(overrides, needle):
    with pytest.raises(ConfigError, match=re.escape(needle)):
        load_config(None, overrides)


def test_numbers_in_exponent_form_are_numbers():
    assert load_config(None, ["train.lr=1e-3"]).train.lr == 1e-3  # YAML 1.1 reads 1e-3 as a string
