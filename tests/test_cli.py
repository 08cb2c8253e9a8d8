"""The command line: one override syntax everywhere, and parsing that never loads torch."""

import subprocess
import sys

import pytest

from tinyasc.cli import main, parse


def test_overrides_are_key_value_words_before_or_after_the_options():
    a = parse(["train", "c.yaml", "x.y=1", "--run-dir", "r", "--quiet", "train.epochs=5"])
    assert a.overrides == ["x.y=1", "train.epochs=5"]
    a = parse(["teachers", "a.yaml", "b.yaml", "--out", "o", "data.root=R"])
    assert a.configs == ["a.yaml", "b.yaml", "data.root=R"]
    a = parse(["compress", "RUN", "--method", "int8-qat", "--out", "o", "train.batch_size=8"])
    assert a.run == "RUN" and a.overrides == ["train.batch_size=8"]
    assert parse(["download", "d", "--dataset", "evaluation-2020"]).dataset == "evaluation-2020"


@pytest.mark.parametrize(
    "argv",
    [
        ["evaluate", "RUN", "x=1"],  # evaluate takes no overrides
        ["train", "c.yaml", "--run-dir", "r", "--nope"],
        ["teachers", "a.yaml", "--out", "o", "--set", "data.root=R"],  # --set is gone: one syntax
    ],
)
def test_anything_else_is_refused_by_the_parser(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2 and "unrecognized arguments" in capsys.readouterr().err


def test_parsing_and_help_load_no_torch():
    code = (
        "import sys, contextlib, io\n"
        "from tinyasc import cli\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "    cli.main(['--help'])\n"
        "cli.parse(['train', 'c.yaml', '--run-dir', 'r'])\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_every_option_of_every_command_has_help():
    import argparse

    from tinyasc.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    missing = [
        f"{name} {action.dest}"
        for name, p in sub.choices.items()
        for action in p._actions
        if not isinstance(action, argparse._HelpAction) and not action.help
    ]
    assert missing == []


def test_a_closed_pipe_ends_quietly(real_setup_root):
    """`tinyasc index ROOT --json | head -1`: no traceback and no error line when the reader goes away
    (the JSON, with 4,538 validation files, is larger than a pipe's buffer)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tinyasc.cli", "index", str(real_setup_root), "--no-audio", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 1
    assert "Traceback" not in err and "Broken pipe" not in err, err
