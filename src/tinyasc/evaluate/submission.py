"""The DCASE 2021 Task 1A submission package: output CSV, meta YAML, zip, and the checker's rules.

Layout (reference section 3.1; the organisers' checker reads ``<root>/task1/<label>/...``)::

    <Lastname>_<Institute>_task1.zip
      <Lastname>_<Institute>_task1/task1/<label>/<label>.output.csv
      <Lastname>_<Institute>_task1/task1/<label>/<label>.meta.yaml

Every rule is checked before anything is written; a package that breaks one is refused with the rule.
Development results in the meta file give accuracy in percent and log loss as a plain number, from the
run's evaluation on fold1_evaluate; ``model_size`` is the non-zero bytes of the shipped model in KB
(1024 bytes), from its size report.
"""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path, PurePosixPath

import numpy as np
import yaml

from tinyasc.compress.size import LIMIT_BYTES
from tinyasc.data.index import load_tau
from tinyasc.data.tau import DEV_DEVICES, SCENES
from tinyasc.evaluate.infer import predict_files
from tinyasc.evaluate.report import format_output_csv
from tinyasc.io import atomic_write_bytes, atomic_write_text
from tinyasc.rundir import RunDir

LABEL_RE = re.compile(r"^[A-Za-z][A-Za-z0-9-]*_[A-Za-z0-9-]+_task1a_[1-4]$")
PROB_SUM_TOLERANCE = 1e-3
DESCRIPTION_FIELDS = (
    "input_sampling_rate",
    "acoustic_features",
    "embeddings",
    "data_augmentation",
    "machine_learning_method",
    "ensemble_method_subsystem_count",
    "decision_making",
    "external_data_usage",
    "complexity_management",
)


class SubmissionError(ValueError):
    """A package that breaks a rule; the message lists every broken rule."""


def check_label(label: str) -> list[str]:
    if not LABEL_RE.match(label):
        return [
            f"label {label!r}: expected <Lastname>_<Institute>_task1a_<1-4> (4 parts, the third 'task1a')"
        ]
    return []


def check_output(text: str, expected: list[str], classes: tuple[str, ...] = SCENES) -> list[str]:
    """Rules of the system output: header, every expected file once, known labels, finite probabilities
    summing to 1 (within 1e-3)."""
    errors: list[str] = []
    lines = text.splitlines()
    if not lines:
        return ["output: empty file"]
    header = lines[0].split("\t")
    missing_cols = [c for c in ("filename", "scene_label", *classes) if c not in header]
    if missing_cols:
        return [f"output: header lacks {missing_cols}"]
    col = {h: i for i, h in enumerate(header)}
    seen: dict[str, int] = {}
    expected_names = {PurePosixPath(e).name for e in expected}
    for i, line in enumerate(lines[1:], start=2):
        f = line.split("\t")
        if len(f) != len(header):
            errors.append(f"output line {i}: {len(f)} fields, expected {len(header)}")
            continue
        name = PurePosixPath(f[col["filename"]]).name
        if name in seen:
            errors.append(f"output line {i}: duplicate file {name!r} (first on line {seen[name]})")
        seen[name] = i
        if name not in expected_names:
            errors.append(f"output line {i}: file {name!r} is not in the evaluation set")
        if f[col["scene_label"]] not in classes:
            errors.append(f"output line {i}: unknown scene label {f[col['scene_label']]!r}")
        try:
            p = np.array([float(f[col[c]]) for c in classes])
        except ValueError:
            errors.append(f"output line {i}: a probability is not a number")
            continue
        if not np.all(np.isfinite(p)):
            errors.append(f"output line {i}: a probability is not finite")
        elif abs(p.sum() - 1) > PROB_SUM_TOLERANCE or p.min() < 0:
            errors.append(f"output line {i}: probabilities sum to {p.sum():.6f}, expected 1 (tolerance 1e-3)")
    missing = sorted(expected_names - set(seen))
    if missing:
        errors.append(f"output: {len(missing)} evaluation file(s) missing, e.g. {missing[:3]}")
    return errors


def _need(d, keys, where) -> list[str]:
    if not isinstance(d, dict):
        return [f"meta: {where} must be a mapping"]
    return [f"meta: {where}.{k} is missing" for k in keys if k not in d]


def check_meta(meta: dict, label: str) -> list[str]:
    """Fields the 2021 checker requires, one corresponding author, abbreviation <= 10 characters."""
    errors = _need(meta, ("submission", "system", "results"), "(top)")
    if errors:
        return errors
    sub = meta["submission"]
    errors += _need(sub, ("label", "name", "abbreviation", "authors"), "submission")
    if sub.get("label") != label:
        errors.append(f"meta: submission.label {sub.get('label')!r} differs from the package label {label!r}")
    if len(str(sub.get("abbreviation", ""))) > 10:
        errors.append(
            f"meta: submission.abbreviation {sub.get('abbreviation')!r} is longer than 10 characters"
        )
    authors = sub.get("authors") or []
    if not isinstance(authors, list) or not authors:
        errors.append("meta: submission.authors must be a non-empty list")
        authors = []
    for i, a in enumerate(authors):
        errors += _need(a, ("lastname", "firstname", "email", "affiliation"), f"submission.authors[{i}]")
    if sum(1 for a in authors if isinstance(a, dict) and a.get("corresponding")) != 1:
        errors.append("meta: exactly one author must have corresponding: true")
    system = meta["system"]
    errors += _need(system, ("description", "complexity", "external_datasets", "source_code"), "system")
    errors += _need(system.get("description", {}), DESCRIPTION_FIELDS, "system.description")
    errors += _need(
        system.get("complexity", {}),
        ("total_parameters", "total_parameters_non_zero", "model_size"),
        "system.complexity",
    )
    for i, ds in enumerate(system.get("external_datasets") or []):
        errors += _need(ds, ("name", "url", "total_audio_length"), f"system.external_datasets[{i}]")
    dev = (meta["results"] or {}).get("development_dataset", {})
    errors += _need(dev, ("overall", "class_wise", "device_wise"), "results.development_dataset")
    errors += _need(dev.get("overall", {}), ("accuracy", "logloss"), "results.development_dataset.overall")
    for group, keys in (("class_wise", SCENES), ("device_wise", DEV_DEVICES)):
        part = dev.get(group, {})
        errors += _need(part, keys, f"results.development_dataset.{group}")
        for k in keys:
            if isinstance(part, dict) and k in part:
                errors += _need(part[k], ("accuracy", "logloss"), f"results.development_dataset.{group}.{k}")
    return errors


def check_size(size: dict) -> list[str]:
    if size["nonzero_bytes"] > LIMIT_BYTES:
        return [f"model size {size['nonzero_bytes']:,} bytes of non-zero parameters exceeds {LIMIT_BYTES:,}"]
    return []


def build_meta(user: dict, label: str, size: dict, metrics: dict, sample_rate: int, storage: str) -> dict:
    """The official template filled from the run; the user's YAML supplies submission fields and may
    override the system description. Complexity and results always come from the run."""
    description = {
        "input_sampling_rate": sample_rate / 1000,
        "acoustic_features": "log-mel energies",
        "embeddings": None,
        "data_augmentation": None,
        "machine_learning_method": "CNN",
        "ensemble_method_subsystem_count": None,
        "decision_making": None,
        "external_data_usage": None,
        "complexity_management": f"{storage} weights",
    }
    system_user = dict(user.get("system") or {})
    description.update(system_user.get("description") or {})

    def res(m):
        return {"accuracy": round(100 * m["accuracy"], 1), "logloss": round(m["logloss"], 3)}

    submission = dict(user.get("submission") or {})
    submission["label"] = label
    return {
        "submission": submission,
        "system": {
            "description": description,
            "complexity": {
                "total_parameters": int(size["params"]),
                "total_parameters_non_zero": int(size["nonzero_params"]),
                "model_size": round(size["nonzero_bytes"] / 1024, 1),
            },
            "external_datasets": system_user.get("external_datasets") or [],
            "source_code": system_user.get("source_code", ""),
        },
        "results": {
            "development_dataset": {
                "overall": res(metrics["overall"]),
                "class_wise": {c: res(m) for c, m in metrics["class_wise"].items()},
                "device_wise": {
                    d: res(metrics["device_wise"][d]) for d in DEV_DEVICES if d in metrics["device_wise"]
                },
            }
        },
    }


def package_root(label: str) -> str:
    lastname, institute = label.split("_")[:2]
    return f"{lastname}_{institute}_task1"


def check_package(zip_bytes: bytes, expected: list[str]) -> list[str]:
    """Re-read a package as the organisers' checker does: paths, label agreement, output and meta rules."""
    errors: list[str] = []
    with zipfile.ZipFile(io.BytesIO(zip_bytes)) as z:
        if z.testzip() is not None:
            return ["zip: a member is corrupt"]
        found: dict[str, dict[str, str]] = {}
        for name in z.namelist():
            parts = PurePosixPath(name).parts
            if name.endswith("/") or "task1" not in name or name.endswith(".pdf"):
                continue
            if len(parts) != 4 or parts[1] != "task1":
                errors.append(f"zip: {name!r} is not at <root>/task1/<label>/<file>")
                continue
            kind = (
                "output" if name.endswith(".output.csv") else "meta" if name.endswith(".meta.yaml") else None
            )
            if kind is None:
                errors.append(f"zip: unexpected file {name!r}")
                continue
            if PurePosixPath(name).name.split(".")[0] != parts[2]:
                errors.append(f"zip: file name {parts[3]!r} does not carry the folder's label {parts[2]!r}")
            found.setdefault(parts[2], {})[kind] = name
        if not found:
            errors.append("zip: no <root>/task1/<label>/ folder")
        for label, files in found.items():
            errors += check_label(label)
            if set(files) != {"output", "meta"}:
                errors.append(f"zip: {label} needs both {label}.output.csv and {label}.meta.yaml")
                continue
            errors += check_output(z.read(files["output"]).decode("utf-8"), expected)
            errors += check_meta(yaml.safe_load(z.read(files["meta"])), label)
    return errors


def write_submission(
    run_dir: str | Path,
    eval_root: str | Path,
    label: str,
    meta_path: str | Path,
    out_dir: str | Path,
    workers: int = 2,
) -> Path:
    """Predict the evaluation set with the run's shipped model and write the checked package."""
    run, out_dir = RunDir(run_dir), Path(out_dir)
    errors = check_label(label)
    size, metrics = run.size(), run.evaluation()
    if not size:
        errors.append(f"{run / run.SIZE_JSON}: missing; run a finished tinyasc train first")
    if not metrics:
        errors.append(f"{run / run.EVALUATION}: missing; run tinyasc evaluate RUN_DIR first")
    meta_path = Path(meta_path)
    if not meta_path.exists():
        errors.append(f"{meta_path}: meta file not found (submission: name, abbreviation, authors)")
    if errors:
        raise SubmissionError("\n".join(errors))
    user = yaml.safe_load(meta_path.read_text()) or {}
    index = load_tau(eval_root)
    clips = index.split("test") if index.kind == "tau-evaluation" else index.split("evaluate")
    lm = run.load_model()
    results = predict_files(lm, [index.path(c) for c in clips], workers=workers, temperature=run.temperature)
    failed = [f"{r.path}: {r.error}" for r in results if r.error]
    if failed:
        raise SubmissionError("evaluation files that could not be predicted:\n" + "\n".join(failed[:10]))
    names = [c.filename for c in clips]
    output = format_output_csv(names, np.stack([r.probs for r in results]), lm.classes)
    meta = build_meta(user, label, size, metrics, lm.frontend.sample_rate, lm.storage)
    meta_text = yaml.safe_dump(meta, sort_keys=False, allow_unicode=True)
    errors = check_size(size) + check_output(output, names) + check_meta(meta, label)
    if errors:
        raise SubmissionError("package refused:\n" + "\n".join(errors))
    root = f"{package_root(label)}/task1/{label}"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(f"{root}/{label}.output.csv", output)
        z.writestr(f"{root}/{label}.meta.yaml", meta_text)
    errors = check_package(buf.getvalue(), names)
    if errors:
        raise SubmissionError("package refused:\n" + "\n".join(errors))
    atomic_write_text(out_dir / "task1" / label / f"{label}.output.csv", output)
    atomic_write_text(out_dir / "task1" / label / f"{label}.meta.yaml", meta_text)
    zip_path = out_dir / f"{package_root(label)}.zip"
    atomic_write_bytes(zip_path, buf.getvalue())
    return zip_path
