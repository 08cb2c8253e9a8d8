"""The model table of ``tinyasc models``: parameters, bytes at three precisions, MACs, fit."""

from __future__ import annotations

from tinyasc.compress.macs import count_macs
from tinyasc.compress.size import LIMIT_BYTES, model_size
from tinyasc.models import create_model, get_model_info, list_models


def model_row(name: str) -> dict:
    info = get_model_info(name)
    model = create_model(name)
    sizes = {p: model_size(model, p).bytes for p in ("float32", "float16", "int8")}
    ships = sizes[info.ships_as]  # ships_as names a size precision
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
        "ships_as": info.ships_as,
        "bytes_as_shipped": ships,
        "fits": ships <= LIMIT_BYTES,
        "description": info.description,
    }


def model_table(names: list[str] | None = None) -> list[dict]:
    return [model_row(n) for n in (names or list_models())]


def format_table(rows: list[dict]) -> str:
    head = ("model", "role", "input", "params", "float32 B", "float16 B", "int8 B", "MMACs", "ships", "fits")
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
                r["ships_as"],
                "yes" if r["fits"] else "no",
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    out = []
    for k, line in enumerate(lines):
        cells = [
            c.ljust(w) if i in (0, 1, 2, 8, 9) else c.rjust(w)
            for i, (c, w) in enumerate(zip(line, widths, strict=True))
        ]
        out.append("  ".join(cells).rstrip())
        if k == 0:
            out.append("  ".join("-" * w for w in widths))
    out.append("")
    out.append(
        f"bytes: every stored value (BN statistics included) at float32; float16 with BN float32 (the Keras "
        f"baseline rule); int8 = per-channel int8 estimate (BN folded where a layer feeds it, float32 scales "
        f"and biases). MACs: conv + linear layers for one 10 s clip (hooks). fits: bytes at 'ships' <= "
        f"{LIMIT_BYTES:,}."
    )
    return "\n".join(out)
