"""The README's Python API example runs as written (in a folder laid out like the repository root)."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _example() -> str:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("### Python API") :]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_public_api_is_lazy_and_complete():
    import tinyasc

    assert {"create_model", "list_models", "load_model", "RunDir", "__version__"} <= set(tinyasc.__all__)
    for name in tinyasc.__all__:
        assert getattr(tinyasc, name) is not None
    with pytest.raises(AttributeError):
        tinyasc.no_such_name  # noqa: B018


def test_readme_python_example_runs(tiny_corpus, tmp_path, monkeypatch, capsys):
    (tmp_path / "tinyasc_demo").mkdir()
    (tmp_path / "tinyasc_demo" / "corpus_quick").symlink_to(tiny_corpus)
    (tmp_path / "configs").symlink_to(ROOT / "configs")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TINYASC_CACHE", str(tmp_path / "cache"))
    exec(compile(_example(), "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert "registered models" in out and "bytes ship as model_float16.pt" in out
    assert re.search(r"accuracy \d\.\d{3}", out)
    assert (tmp_path / "runs" / "api_example" / "model.pt").exists()
