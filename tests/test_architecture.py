"""The structure docs/architecture.md describes, checked on the source (lint-imports checks the layers)."""

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "tinyasc"
RUN_FILES = re.compile(
    r"^(config\.yaml|metrics\.jsonl?|last\.pt|best\.pt|model(_\w+)?\.pt|size\.(json|txt)|calibration\.json"
    r"|device_transfer\.json|report\.md|confusion\.png|devices\.png|output\.csv|compress\.json|ensemble\.json)$"
)


def _modules():
    for path in sorted(SRC.rglob("*.py")):
        yield path, ast.parse(path.read_text(), str(path))


def test_only_rundir_names_run_directory_files():
    found = []
    for path, tree in _modules():
        if path.name == "rundir.py":
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and RUN_FILES.match(node.value):
                found.append(f"{path.relative_to(SRC)}:{node.lineno} {node.value!r}")
    assert found == []


def test_the_model_file_format_is_checked_in_one_place():
    hits = [p for p in SRC.rglob("*.py") if '"tinyasc-model-1"' in p.read_text()]
    assert [p.name for p in hits] == ["artifact.py"]
    assert (SRC / "artifact.py").read_text().count('"tinyasc-model-1"') == 1


def test_function_level_imports_of_tinyasc_are_few_and_commented():
    inner = []
    for path, tree in _modules():
        lines = path.read_text().splitlines()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom | ast.Import) and node.col_offset > 0:
                names = (
                    [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
                )
                if any(n == "tinyasc" or n.startswith("tinyasc.") for n in names):
                    inner.append((path.name, "#" in lines[node.lineno - 1]))
    assert len(inner) <= 3, inner
    assert all(commented for _, commented in inner), inner


def test_no_import_cycles_among_modules():
    graph: dict[str, set[str]] = {}
    for path, tree in _modules():
        mod = ".".join(("tinyasc", *path.relative_to(SRC).with_suffix("").parts)).removesuffix(".__init__")
        deps = graph.setdefault(mod, set())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tinyasc"):
                deps.add(node.module)
                deps.update(f"{node.module}.{a.name}" for a in node.names)
    graph = {m: {d for d in deps if d in graph and d != m} for m, deps in graph.items()}
    state: dict[str, int] = {}  # 1 on the path, 2 done

    def visit(m, path):
        state[m] = 1
        for d in sorted(graph[m]):
            if state.get(d) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*path, m, d]))
            if d not in state:
                visit(d, [*path, m])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [])


LINT = Path(sys.executable).parent / "lint-imports"


@pytest.mark.skipif(not LINT.exists(), reason="import-linter is installed by .[test]")
def test_import_contracts_hold():
    res = subprocess.run([str(LINT)], cwd=SRC.parents[1], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout[-2000:]
