"""Property tests: any input to the config, override and CSV parsers loads or fails with the parser's
own error (ConfigError / DataError) naming the key, file or line, never another exception."""

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tinyasc.config import Config, ConfigError, load_config
from tinyasc.data.index import DataError, load_generic, load_tau

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
KEYS = st.sampled_from(
    [
        "train.epochs",
        "train.lr",
        "model.params",
        "data.classes",
        "quantize",
        "prune.target",
        "frontend",
        "augment.mixup_alpha",
        "train.trackers",
        "data.evaluate_folds",
        "x",
        "train",
        "a.b.c",
        "",
    ]
)
VALUES = st.one_of(
    st.text(max_size=12),
    st.sampled_from(
        ["{bad", "[1", "[[1]]", "{a: 1}", "1e-3", "-1", "true", "null", "!!python/object:os.system", "~"]
    ),
)


@SETTINGS
@given(
    st.lists(st.one_of(st.text(max_size=20), st.builds(lambda k, v: f"{k}={v}", KEYS, VALUES)), max_size=4)
)
def test_any_override_loads_or_names_the_problem(overrides):
    try:
        assert isinstance(load_config(None, overrides), Config)
    except ConfigError as e:
        assert str(e)


@SETTINGS
@given(st.one_of(st.text(max_size=200), st.binary(max_size=100)))
def test_any_config_file_loads_or_names_the_file(content):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "c.yaml"
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        try:
            load_config(path)
        except ConfigError as e:
            assert str(e)


CELLS = st.one_of(
    st.text(alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\t\n\r"), max_size=12),
    st.sampled_from(["audio/a.wav", "park", "a", "1", "", "audio/park-lisbon-1-1-a.wav", "\ufeff"]),
)
ROWS = st.lists(st.lists(CELLS, min_size=0, max_size=6).map("\t".join), max_size=6).map("\n".join)


@SETTINGS
@given(ROWS)
def test_any_generic_csv_loads_or_names_the_line(text):
    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / "labels.csv"
        csv.write_text(text, encoding="utf-8")
        try:
            load_generic(csv, tmp, check_audio=False)
        except DataError as e:
            assert str(csv) in str(e) or "labels" in str(e) or str(e)


@SETTINGS
@given(ROWS, ROWS)
def test_any_tau_split_files_load_or_name_the_line(train, evaluate):
    with tempfile.TemporaryDirectory() as tmp:
        setup = Path(tmp) / "evaluation_setup"
        setup.mkdir()
        (setup / "fold1_train.csv").write_text(train, encoding="utf-8")
        (setup / "fold1_evaluate.csv").write_text(evaluate, encoding="utf-8")
        try:
            load_tau(tmp, check_audio=False)
        except DataError as e:
            assert str(e)
