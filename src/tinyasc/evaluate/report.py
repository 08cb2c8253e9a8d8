"""DCASE output files, metrics.json, a Markdown report and a confusion-matrix PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tinyasc.data.index import DataError, _read_rows
from tinyasc.io import atomic_write_bytes, atomic_write_json, atomic_write_text


def format_output_csv(filenames: list[str], probs: np.ndarray, classes: tuple[str, ...]) -> str:
    """Tab-separated ``filename scene_label <classes...>`` (the DCASE 2021 system output format)."""
    lines = ["\t".join(["filename", "scene_label", *classes])]
    for name, p in zip(filenames, probs, strict=True):
        lines.append("\t".join([name, classes[int(np.argmax(p))], *(f"{v:.8f}" for v in p)]))
    return "\n".join(lines) + "\n"


def read_output_csv(path: str | Path, classes: tuple[str, ...]) -> tuple[list[str], np.ndarray]:
    """Parse a DCASE output file; columns are found by header name, so any column order is accepted."""
    path = Path(path)
    text = path.read_text(encoding="utf-8").splitlines()
    if not text:
        raise DataError(f"{path}: empty file; expected a header filename<TAB>scene_label<TAB><classes>")
    header = text[0].split("\t")
    missing = [c for c in ("filename", "scene_label", *classes) if c not in header]
    if missing:
        raise DataError(
            f"{path}:1: header lacks {missing}; expected filename, scene_label and the {len(classes)} classes"
        )
    col = {h: i for i, h in enumerate(header)}
    names, probs = [], []
    for line, fields in _read_rows(path, ["filename"]):
        try:
            p = [float(fields[col[c]]) for c in classes]
        except ValueError:
            raise DataError(f"{path}:{line}: probability that is not a number") from None
        if not np.all(np.isfinite(p)):
            raise DataError(f"{path}:{line}: probability that is not finite")
        names.append(fields[col["filename"]])
        probs.append(p)
    return names, np.array(probs, dtype=np.float64)


def _fmt(v, pct=False) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return "-"
    return f"{100 * v:.1f}%" if pct else f"{v:.3f}"


def _ci(v, pct=False) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return "-"
    return f"{100 * v:.1f}" if pct else f"{v:.3f}"


def markdown_report(metrics: dict, title: str) -> str:
    o = metrics["overall"]
    lines = [f"# {title}", ""]
    if "model" in metrics:
        lines += [
            f"Model: `{metrics['model']}` ({metrics.get('storage', '')}); "
            f"size {metrics.get('size_bytes', '-'):,} bytes of non-zero parameters.",
            "",
        ]
    lines += [
        "| files | accuracy (class-wise mean) | 95% CI | micro accuracy | log loss | 95% CI |",
        "|---|---|---|---|---|---|",
        f"| {o['files']} | {_fmt(o['accuracy'], True)} | ±{100 * o['accuracy_ci95']:.1f} | "
        f"{_fmt(o['micro_accuracy'], True)} | {_fmt(o['logloss'])} | ±{o['logloss_ci95']:.3f} |",
        "",
        "95% confidence intervals: class-wise accuracy with Agresti-Coull (adjusted Wald) intervals per "
        "class, which stay wide when a class is always or never right; log loss with the normal "
        "approximation (see tinyasc.evaluate.metrics).",
        "",
    ]
    if "uncalibrated" in metrics:
        lines += [
            f"Calibrated by temperature scaling (T = {metrics['temperature']:.3f}, fitted on the validation split): "
            f"log loss {metrics['uncalibrated']['logloss']:.3f} before, {o['logloss']:.3f} after.",
            "",
        ]
    devices = list(metrics["device_wise"])
    head = ["| {} | files | accuracy | 95% CI | log loss | 95% CI |", "|---|---|---|---|---|---|"]

    def row(name, m):
        return (
            f"| {name} | {m['files']} | {_fmt(m['accuracy'], True)} | ±{_ci(m['accuracy_ci95'], True)} | "
            f"{_fmt(m['logloss'])} | ±{_ci(m['logloss_ci95'])} |"
        )

    if metrics["group_wise"]:
        lines += ["## Device groups", "", head[0].format("group"), head[1]]
        lines += [row(g, m) for g, m in metrics["group_wise"].items()]
        lines.append("")
    lines += ["## Devices", "", head[0].format("device"), head[1]]
    lines += [row(d.upper(), m) for d, m in metrics["device_wise"].items()]
    lines += ["", "![accuracy and log loss per device](devices.png)", ""]
    lines += ["## Accuracy per class and device", ""]
    lines.append("| scene | accuracy | " + " | ".join(d.upper() for d in devices) + " |")
    lines.append("|---|---|" + "---|" * len(devices))
    for name, m in metrics["class_wise"].items():
        cells = [_fmt(metrics["class_device_accuracy"][name].get(d), True) for d in devices]
        lines.append(f"| {name} | {_fmt(m['accuracy'], True)} | " + " | ".join(cells) + " |")
    accs = [_fmt(metrics["device_wise"][d]["accuracy"], True) for d in devices]
    lines.append(f"| **class-wise mean** | **{_fmt(o['accuracy'], True)}** | " + " | ".join(accs) + " |")
    lines += ["", "## Log loss per class and device (accuracy over all devices)", ""]
    lines.append("| scene | log loss | " + " | ".join(d.upper() for d in devices) + " | accuracy |")
    lines.append("|---|---|" + "---|" * len(devices) + "---|")
    for name, m in metrics["class_wise"].items():
        cells = [_fmt(metrics["class_device_logloss"][name].get(d)) for d in devices]
        lines.append(
            f"| {name} | {_fmt(m['logloss'])} | " + " | ".join(cells) + f" | {_fmt(m['accuracy'], True)} |"
        )
    avg = [_fmt(metrics["device_wise"][d]["logloss"]) for d in devices]
    lines.append(
        f"| **average** | **{_fmt(o['logloss'])}** | "
        + " | ".join(avg)
        + f" | **{_fmt(o['accuracy'], True)}** |"
    )
    lines += ["", "![confusion matrix](confusion.png)", ""]
    return "\n".join(lines)


def confusion_png(
    cm: np.ndarray, classes: tuple[str, ...], path: Path, title: str = "Confusion matrix"
) -> None:
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.asarray(cm, dtype=float)
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(7.5, 6.5))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(classes)), classes, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(classes)), classes, fontsize=8)
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(
                j,
                i,
                f"{int(cm[i, j])}",
                ha="center",
                va="center",
                fontsize=7,
                color="white" if norm[i, j] > 0.5 else "black",
            )
    ax.set_xlabel("predicted scene")
    ax.set_ylabel("true scene")
    ax.set_title(title, fontsize=10)
    bar = fig.colorbar(im, ax=ax, fraction=0.046)
    bar.set_label("share of the true scene's files (row-normalised); cells: file counts", fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def devices_png(metrics: dict, path: Path, title: str) -> None:
    """Accuracy (with its 95% interval) and log loss per device, devices grouped as the report groups."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    devices = list(metrics["device_wise"])
    acc = np.array([100 * metrics["device_wise"][d]["accuracy"] for d in devices])
    err = np.array([100 * metrics["device_wise"][d]["accuracy_ci95"] for d in devices])
    loss = np.array([metrics["device_wise"][d]["logloss"] for d in devices])
    fig, (a1, a2) = plt.subplots(2, 1, figsize=(7.5, 5.5), sharex=True)
    x = np.arange(len(devices))
    a1.bar(x, acc, yerr=err, capsize=3, color="#4a7ab5")
    a1.axhline(100 * metrics["overall"]["accuracy"], color="black", lw=0.8, ls="--", label="all devices")
    a1.set_ylabel("class-wise accuracy (%)")
    a1.set_ylim(0, 100)
    a1.legend(fontsize=8, loc="lower right")
    a2.bar(x, loss, color="#c0504d")
    a2.axhline(metrics["overall"]["logloss"], color="black", lw=0.8, ls="--")
    a2.set_ylabel("log loss")
    a2.set_xticks(x, [d.upper() for d in devices])
    a2.set_xlabel("device (error bars: 95% interval)")
    a1.set_title(title, fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def write_reports(paths: dict[str, Path], metrics: dict, classes: tuple[str, ...], title: str) -> None:
    """metrics.json, confusion.png, devices.png and report.md at ``paths`` (``RunDir.report_paths``)."""
    atomic_write_json(paths["metrics"], metrics)
    confusion_png(np.array(metrics["confusion"]), classes, paths["confusion"], f"Confusion matrix: {title}")
    if metrics["device_wise"]:
        devices_png(metrics, paths["devices"], f"Per device: {title}")
    atomic_write_text(paths["report"], markdown_report(metrics, title))
