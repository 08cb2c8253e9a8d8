"""``tinyasc compare RUN...``: evaluated runs side by side, and the size-versus-accuracy plot.

Every DCASE low-complexity submission is read against the size limit: the plot puts each run at its
stored non-zero bytes (the 2021 rule, from its size report) and its class-wise accuracy on the evaluate
split with the 95% interval, with the 128,000-byte limit drawn across.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from tinyasc.compress.size import LIMIT_BYTES
from tinyasc.data.index import DataError
from tinyasc.io import atomic_write_bytes
from tinyasc.rundir import RunDir


def compare_rows(runs: list[str | Path]) -> list[dict]:
    """One row per run: model, storage, bytes, fit, accuracy with its interval, log loss, unseen devices."""
    if not runs:
        raise DataError("compare: give at least one run directory")
    rows = []
    for path in runs:
        run = RunDir(path)
        size, m = run.size(), run.evaluation()
        if not size:
            raise DataError(f"{run.path}: no {run.SIZE_JSON}; not a finished tinyasc run")
        if not m:
            raise DataError(f"{run.path}: no {run.EVALUATION}; run tinyasc evaluate {run.path} first")
        o = m["overall"]
        rows.append(
            {
                "run": str(run.path),
                "name": run.path.name,
                "model": m.get("model", "-"),
                "storage": m.get("storage", "-"),
                "bytes": int(size["nonzero_bytes"]),
                "fits": int(size["nonzero_bytes"]) <= LIMIT_BYTES,
                "accuracy": o["accuracy"],
                "accuracy_ci95": o["accuracy_ci95"],
                "logloss": o["logloss"],
                "logloss_ci95": o["logloss_ci95"],
                "unseen_accuracy": m.get("group_wise", {}).get("unseen", {}).get("accuracy"),
                "files": o["files"],
            }
        )
    return rows


def format_rows(rows: list[dict]) -> str:
    """A Markdown table, in the order given."""
    lines = [
        "| run | model | storage | non-zero bytes | fits | accuracy | log loss | unseen devices | files |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        unseen = "-" if r["unseen_accuracy"] is None else f"{100 * r['unseen_accuracy']:.1f}%"
        lines.append(
            f"| {r['name']} | {r['model']} | {r['storage']} | {r['bytes']:,} | {'yes' if r['fits'] else 'no'} | "
            f"{100 * r['accuracy']:.1f}% ±{100 * r['accuracy_ci95']:.1f} | {r['logloss']:.3f} "
            f"±{r['logloss_ci95']:.3f} | {unseen} | {r['files']} |"
        )
    return "\n".join(lines)


def size_accuracy_png(rows: list[dict], path: str | Path) -> None:
    """Accuracy (95% interval) against stored non-zero bytes, with the 128,000-byte limit."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kb = np.array([r["bytes"] / 1000 for r in rows])
    acc = np.array([100 * r["accuracy"] for r in rows])
    err = np.array([100 * r["accuracy_ci95"] for r in rows])
    fig, ax = plt.subplots(figsize=(7.5, 5))
    colors = ["#4a7ab5" if r["fits"] else "#c0504d" for r in rows]
    ax.errorbar(kb, acc, yerr=err, fmt="none", ecolor="grey", capsize=3, lw=0.8)
    ax.scatter(kb, acc, c=colors, zorder=3)
    for x, y, r in zip(kb, acc, rows, strict=True):
        ax.annotate(r["name"], (x, y), textcoords="offset points", xytext=(5, 4), fontsize=8)
    ax.axvline(LIMIT_BYTES / 1000, color="black", ls="--", lw=0.8, label=f"limit {LIMIT_BYTES:,} bytes")
    ax.set_xlabel("non-zero parameters as stored (kB, 1 kB = 1,000 bytes; DCASE 2021 rule)")
    ax.set_ylabel("class-wise accuracy on the evaluate split (%)")
    ax.set_title("Size against accuracy (bars: 95% interval; red: over the limit)", fontsize=10)
    ax.set_xlim(left=0)
    ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
