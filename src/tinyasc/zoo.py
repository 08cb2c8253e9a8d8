"""The model table of ``tinyasc models``: parameters, bytes at three precisions, MACs, fit.

A row is a pure function of the architecture code and the counting code, so the table is kept in the
cache folder (``$TINYASC_CACHE``, default ``~/.cache/tinyasc``) under a key hashed from that source and
the torch version: the first listing builds every model and runs one clip through it (seconds), later
ones read the file. Any change to ``tinyasc/models/`` or the size and MAC rules makes a new key.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import torch

from tinyasc import models
from tinyasc.compress import macs, memory, size
from tinyasc.compress.complexity import parameter_bytes, verdict
from tinyasc.compress.macs import count_macs
from tinyasc.compress.memory import activation_memory
from tinyasc.compress.size import LIMIT_BYTES, model_size
from tinyasc.config import FrontendConfig
from tinyasc.data.cache import default_cache_dir
from tinyasc.io import atomic_write_json
from tinyasc.models import create_model, get_model_info, list_models
from tinyasc.rules import get_rules

log = logging.getLogger(__name__)


def model_row(name: str) -> dict:
    info = get_model_info(name)
    model = create_model(name)
    sizes = {p: model_size(model, p).bytes for p in ("float32", "float16", "int8")}
    ships = sizes.get(info.ships_as) or model_size(model, info.ships_as).bytes  # a size precision
    return {
        "name": name,
        "family": info.family,
        "role": info.role,
        "input": [info.n_mels, info.frames],
        "frontend": info.frontend,
        "params": sum(p.numel() for p in model.parameters()),
        "bytes_float32": sizes["float32"],
        "bytes_float16": sizes["float16"],
        "bytes_int8": sizes["int8"],
        "macs": count_macs(model).total,
        "peak_activation_bytes": activation_memory(model).peak_bytes,
        "ships_as": info.ships_as,
        "bytes_as_shipped": ships,
        "fits": ships <= LIMIT_BYTES,
        "description": info.description,
    }


def table_key() -> str:
    """Hash of what a row depends on: the model and counting source, and the torch version."""
    h = hashlib.sha1(torch.__version__.encode())
    sources = sorted(Path(models.__file__).parent.glob("*.py")) + [
        Path(size.__file__),
        Path(macs.__file__),
        Path(memory.__file__),
    ]
    for path in sources:
        h.update(path.name.encode() + path.read_bytes())
    return h.hexdigest()[:16]


def model_table(names: list[str] | None = None, cache_dir: str | Path | None = None) -> list[dict]:
    """Rows of ``names`` (default: every registered model), from the cached table when it is current."""
    names = names or list_models()
    for n in names:
        get_model_info(n)  # an unknown name fails before anything is computed
    path = Path(cache_dir or default_cache_dir()) / f"models-{table_key()}.json"
    try:
        cached = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        cached = {}
    missing = [n for n in names if n not in cached]
    if missing:
        cached.update({n: model_row(n) for n in missing})
        try:
            atomic_write_json(path, cached)
        except OSError as e:  # a read-only cache folder: the table is right, only computed again next time
            log.warning("could not store the model table in %s (%s)", path, e)
    return [cached[n] for n in names]


def aligned(lines: list[tuple[str, ...]], left: tuple[int, ...]) -> list[str]:
    """Rows of cells padded into columns (the ``left`` columns flush left, the numbers right), a rule
    under the header row."""
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    out = []
    for k, line in enumerate(lines):
        cells = [
            c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths, strict=True))
        ]
        out.append("  ".join(cells).rstrip())
        if k == 0:
            out.append("  ".join("-" * w for w in widths))
    return out


def format_table(rows: list[dict]) -> str:
    head = (
        "model",
        "role",
        "input",
        "params",
        "float32 B",
        "float16 B",
        "int8 B",
        "MMACs",
        "act. KB",
        "ships",
        "fits",
    )
    lines = [head]
    for r in rows:
        lines.append(
            (
                r["name"],
                r["role"],
                f"{r['input'][0]}x{r['input'][1]}",
                f"{r['params']:,}",
                f"{r['bytes_float32']:,}",
                f"{r['bytes_float16']:,}",
                f"{r['bytes_int8']:,}",
                f"{r['macs'] / 1e6:,.1f}",
                f"{r['peak_activation_bytes'] / 1000:,.0f}",
                r["ships_as"],
                "yes" if r["fits"] else "no",
            )
        )
    out = aligned(lines, left=(0, 1, 2, 9, 10))
    out.append("")
    out.append(
        f"bytes: every stored value (BN statistics included) at float32; float16 with BN float32 (the Keras "
        f"baseline rule); int8 = per-channel int8 estimate (BN folded where a layer feeds it, float32 scales "
        f"and biases). MACs: conv + linear layers for one clip of the input column (10 s; 1 s for cpmobile_dcase2024) (hooks). act. KB: peak activation memory of "
        f"one clip at float32 (compress/memory.py). fits: bytes at 'ships' <= "
        f"{LIMIT_BYTES:,}."
    )
    return "\n".join(out)


def rules_rows(rules_name: str, names: list[str] | None = None) -> list[dict]:
    """Every model (or ``names``) built for the edition's clip length and judged by its rules: the
    parameters and MACs as torchinfo counts them, memory at the precision the model ships in."""
    rules = get_rules(rules_name)
    rows = []
    for name in names or list_models():
        info = get_model_info(name)
        fe = FrontendConfig(**{**info.frontend, "duration": rules.clip_seconds})
        model = create_model(name, frames=fe.n_frames)
        tensors = size.storage_tensors(model, info.ships_as)
        v = verdict(
            rules,
            model,
            fe.duration,
            parameter_bytes(tensors),
            model_size(model, info.ships_as).nonzero_bytes,
        )
        rows.append(
            {"name": name, "role": info.role, "input": [fe.n_mels, fe.n_frames], "ships_as": info.ships_as}
            | v.to_dict()
        )
    return rows


def format_rules_table(rows: list[dict]) -> str:
    head = ("model", "role", "input", "params", "counted", "MMACs/s", "ships", "verdict")
    lines = [head]
    for r in rows:
        why = ", ".join(
            "MACs" if "MACs" in x else "memory" if "counted" in x else "clip" for x in r["reasons"]
        )
        lines.append(
            (
                r["name"],
                r["role"],
                f"{r['input'][0]}x{r['input'][1]}",
                f"{r['params']:,}",
                f"{r['counted']:,} {'B' if r['unit'] == 'bytes' else 'p'}",
                f"{r['macs_per_second'] / 1e6:,.1f}",
                r["ships_as"],
                "PASS" if r["passes"] else f"FAIL ({why})",
            )
        )
    out = aligned(lines, left=(0, 1, 2, 6, 7))
    r = get_rules(rows[0]["rules"]) if rows else None
    if r is not None:
        macs = f"{r.macs_per_second:,}" if r.macs_per_second else "no limit"
        out += [
            "",
            f"{r.name}: each model built for {r.clip_seconds:g}-s clips; counted: {r.counted_as} "
            f"(p: parameters, B: bytes; limit {r.limit:,}); MACs per second as torchinfo counts them "
            f"(limit {macs}).",
        ]
    return "\n".join(out)


def fit_width(
    name: str, n_classes: int, limit: int, precision: str | None = None, params: dict | None = None
):
    """``(model.params, bytes)`` of the widest version of ``name`` (its widths scaled by one factor) that
    stores at most ``limit`` bytes at ``precision`` (default: what it ships as) for ``n_classes``.

    The classifier grows with the classes, so a budget variant for many classes may need narrower
    layers. Every distinct width set of scales 0.10, 0.12, ... 3.00 (widths rounded to multiples of 4)
    is built and counted dense as it would ship before training; the one storing the most bytes within
    the limit wins (the bytes do not grow strictly with the scale once widths are rounded)."""
    info = get_model_info(name)
    if info.scale is None:
        raise ValueError(f"model {name!r}: no width to scale; choose a variant with `tinyasc size NAME`")
    precision = precision or info.ships_as
    candidates: dict[str, dict] = {}
    for i in range(10, 301, 2):
        scaled = info.scale(i / 100)
        p = {**(params or {}), **scaled}
        candidates.setdefault(json.dumps(p, sort_keys=True, default=list), p)
    best, smallest = None, None
    for p in candidates.values():
        try:
            model = create_model(name, n_classes=n_classes, **p)
        except ValueError:
            continue  # a width the architecture refuses (e.g. too narrow for its groups)
        nbytes = model_size(model, precision).bytes
        smallest = nbytes if smallest is None else min(smallest, nbytes)
        if nbytes <= limit and (best is None or nbytes > best[1]):
            best = (p, nbytes)
    if best is None:
        raise ValueError(
            f"model {name!r} for {n_classes} classes does not fit {limit:,} bytes at {precision} even at "
            f"its narrowest ({smallest:,} bytes)"
            if smallest
            else f"model {name!r}: no width builds"
        )
    return best
