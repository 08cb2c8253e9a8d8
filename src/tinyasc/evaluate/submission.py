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
from dataclasses import dataclass, field
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


@dataclass
class Findings:
    """What a check found: ``errors`` the organisers' validator rejects a package for, and ``warnings``,
    tinyasc's stricter rules that the organisers accept (a package with only warnings would be taken)."""

    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def __iadd__(self, other: Findings) -> Findings:
        self.errors += other.errors
        self.warnings += other.warnings
        return self


def check_label(label: str) -> list[str]:
    if not LABEL_RE.match(label):
        return [
            f"label {label!r}: expected <Lastname>_<Institute>_task1a_<1-4> (4 parts, the third 'task1a')"
        ]
    return []


def check_output(text: str, expected: list[str], classes: tuple[str, ...] = SCENES) -> Findings:
    """The system output's rules. Errors, as the organisers' validator: the header holds every field;
    every row has exactly the header's fields (filename, scene_label, one column per class); file
    names are .wav files of the evaluation set, each once, all of them; labels are known classes;
    probabilities parse as numbers. Warnings (tinyasc): probabilities finite, >= 0, summing to 1
    (within 1e-3), which the validator does not check."""
    out = Findings()
    lines = text.splitlines()
    if not lines:
        out.errors.append("output: empty file")
        return out
    header = lines[0].split("\t")
    fields = ("filename", "scene_label", *classes)
    missing_cols = [c for c in fields if c not in header]
    if missing_cols:
        out.errors.append(f"output: header lacks {missing_cols}; expected {list(fields)}")
        return out
    col = {h: i for i, h in enumerate(header)}
    seen: dict[str, int] = {}
    expected_names = {PurePosixPath(e).name for e in expected}
    for i, line in enumerate(lines[1:], start=2):
        f = line.split("\t")
        if len(f) != len(fields):
            out.errors.append(
                f"output line {i}: {len(f)} fields, expected {len(fields)} ({', '.join(fields)})"
            )
            continue
        name = PurePosixPath(f[col["filename"]]).name
        if name in seen:
            out.errors.append(f"output line {i}: duplicate file {name!r} (first on line {seen[name]})")
        seen.setdefault(name, i)
        if not name.endswith(".wav"):
            out.errors.append(f"output line {i}: file {name!r} does not end in .wav")
        elif name not in expected_names:
            out.errors.append(f"output line {i}: file {name!r} is not in the evaluation set")
        if f[col["scene_label"]] not in classes:
            out.errors.append(f"output line {i}: unknown scene label {f[col['scene_label']]!r}")
        try:
            p = np.array([float(f[col[c]]) for c in classes])
        except ValueError:
            out.errors.append(f"output line {i}: a probability is not a number")
            continue
        if not np.all(np.isfinite(p)):
            out.warnings.append(f"output line {i}: a probability is not finite")
        elif abs(p.sum() - 1) > PROB_SUM_TOLERANCE or p.min() < 0:
            out.warnings.append(
                f"output line {i}: probabilities sum to {p.sum():.6f}, expected 1 (tolerance 1e-3)"
            )
    missing = sorted(expected_names - set(seen))
    if missing:
        out.errors.append(
            f"output: {len(seen)} unique files, expected {len(expected_names)}: {len(missing)} evaluation "
            f"file(s) missing, e.g. {missing[:3]}"
        )
    return out


def _need(d, keys, where) -> list[str]:
    if not isinstance(d, dict):
        return [f"meta: {where} must be a mapping"]
    return [f"meta: {where}.{k} is missing" for k in keys if k not in d]


def _parses(value, kind: type) -> bool:
    """The validator's test: ``kind(value)`` works (``int``: 46246, 46246.0 and "46246" pass, "46k" fails);
    a boolean is not a number."""
    try:
        kind(value)
    except (TypeError, ValueError):
        return False
    return not isinstance(value, bool)


def check_meta(meta, label: str) -> Findings:
    """The meta file's rules. Errors, as the organisers' validator: the submission, system and results
    blocks and their required fields, exactly one corresponding author, the label, an abbreviation of
    at most 10 characters, an integer ``total_parameters``, numeric results. Warnings (tinyasc): the
    fields of the 2021 low-complexity instructions that the validator does not require
    (``complexity_management``, ``total_parameters_non_zero``, ``model_size``)."""
    out = Findings()
    out.errors += _need(meta, ("submission", "system", "results"), "(top)")
    if out.errors:
        return out
    sub = meta["submission"]
    out.errors += _need(sub, ("label", "name", "abbreviation", "authors"), "submission")
    if isinstance(sub, dict):
        if sub.get("label") != label:
            out.errors.append(
                f"meta: submission.label {sub.get('label')!r} differs from the package label {label!r}"
            )
        if len(str(sub.get("abbreviation", ""))) > 10:
            out.errors.append(
                f"meta: submission.abbreviation {sub.get('abbreviation')!r} is longer than 10 characters"
            )
        authors = sub.get("authors") or []
        if not isinstance(authors, list) or not authors:
            out.errors.append("meta: submission.authors must be a non-empty list")
            authors = []
        for i, a in enumerate(authors):
            out.errors += _need(
                a, ("lastname", "firstname", "email", "affiliation"), f"submission.authors[{i}]"
            )
        if sum(1 for a in authors if isinstance(a, dict) and a.get("corresponding")) != 1:
            out.errors.append("meta: exactly one author must have corresponding: true")
    system = meta["system"]
    out.errors += _need(system, ("description", "complexity", "external_datasets", "source_code"), "system")
    system = system if isinstance(system, dict) else {}
    description = system.get("description", {})
    out.errors += _need(description, DESCRIPTION_FIELDS[:-1], "system.description")
    if isinstance(description, dict):
        out.warnings += _need(description, DESCRIPTION_FIELDS[-1:], "system.description")
    complexity = system.get("complexity", {})
    out.errors += _need(complexity, ("total_parameters",), "system.complexity")
    if isinstance(complexity, dict):
        out.warnings += _need(complexity, ("total_parameters_non_zero", "model_size"), "system.complexity")
        if "total_parameters" in complexity and not _parses(complexity["total_parameters"], int):
            out.errors.append(
                f"meta: system.complexity.total_parameters {complexity['total_parameters']!r} is not an integer"
            )
    for i, ds in enumerate(system.get("external_datasets") or []):
        out.errors += _need(ds, ("name", "url", "total_audio_length"), f"system.external_datasets[{i}]")
    dev = (meta["results"] or {}).get("development_dataset", {}) if isinstance(meta["results"], dict) else {}
    out.errors += _need(dev, ("overall", "class_wise", "device_wise"), "results.development_dataset")
    if not isinstance(dev, dict):
        return out
    parts = [("overall", dev.get("overall", {}))]
    for group, keys in (("class_wise", SCENES), ("device_wise", DEV_DEVICES)):
        part = dev.get(group, {})
        out.errors += _need(part, keys, f"results.development_dataset.{group}")
        parts += [(f"{group}.{k}", part[k]) for k in keys if isinstance(part, dict) and k in part]
    for where, values in parts:
        out.errors += _need(values, ("accuracy", "logloss"), f"results.development_dataset.{where}")
        for k, v in values.items() if isinstance(values, dict) else ():
            if not _parses(v, float):
                out.errors.append(f"meta: results.development_dataset.{where}.{k} {v!r} is not a number")
    return out


def check_size(size: dict) -> list[str]:
    """The run's size against its edition's rules (size.json "rules", from 2022), else the 2021 limit."""
    if "rules" in size:
        v = size["rules"]
        return [f"{v['rules']}: {r}" for r in v["reasons"]]
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


def read_meta_yaml(text: str | bytes, where: str) -> tuple[object, list[str]]:
    """``(meta, errors)``: safe YAML (no tags that build objects); a syntax error is one line naming
    ``where`` and the line of the error."""
    try:
        return yaml.safe_load(text), []
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        return None, [f"{where}: not valid YAML{at} ({problem})"]


def check_package(zip_bytes: bytes, expected: list[str]) -> Findings:
    """Re-read a package as the organisers' validator does (paths, label agreement, output and meta
    rules: errors), plus tinyasc's stricter rules (warnings)."""
    out = Findings()
    try:
        z = zipfile.ZipFile(io.BytesIO(zip_bytes))
    except zipfile.BadZipFile:
        out.errors.append("zip: not a zip file")
        return out
    with z:
        if z.testzip() is not None:
            out.errors.append("zip: a member is corrupt")
            return out
        found: dict[str, dict[str, str]] = {}
        pdfs = [n for n in z.namelist() if n.lower().endswith(".pdf")]
        for name in z.namelist():
            parts = PurePosixPath(name).parts
            if name.endswith("/") or "task1" not in name or name.lower().endswith(".pdf"):
                continue
            if len(parts) != 4 or parts[1] != "task1":
                out.errors.append(f"zip: {name!r} is not at <root>/task1/<label>/<file>")
                continue
            kind = (
                "output" if name.endswith(".output.csv") else "meta" if name.endswith(".meta.yaml") else None
            )
            if kind is None:
                out.errors.append(f"zip: unexpected file {name!r}")
                continue
            if PurePosixPath(name).name.split(".")[0] != parts[2]:
                out.errors.append(
                    f"zip: file name {parts[3]!r} does not carry the folder's label {parts[2]!r}"
                )
            found.setdefault(parts[2], {})[kind] = name
        if not found:
            out.errors.append("zip: no <root>/task1/<label>/ folder")
        if not pdfs:
            out.warnings.append(
                "zip: no technical report (.pdf); the instructions require one, the validator does not check it"
            )
        for label, files in found.items():
            out.errors += check_label(label)
            if set(files) != {"output", "meta"}:
                out.errors.append(f"zip: {label} needs both {label}.output.csv and {label}.meta.yaml")
                continue
            try:
                text = z.read(files["output"]).decode("utf-8")
            except UnicodeDecodeError:
                out.errors.append(f"zip: {files['output']} is not UTF-8 text")
                continue
            out += check_output(text, expected)
            meta, errors = read_meta_yaml(z.read(files["meta"]), files["meta"])
            out.errors += errors
            if not errors:
                out += check_meta(meta, label)
    return out


def write_submission(
    run_dir: str | Path,
    eval_root: str | Path,
    label: str,
    meta_path: str | Path,
    out_dir: str | Path,
    workers: int = 2,
    report: str | Path | None = None,
) -> Path:
    """Predict the evaluation set with the run's shipped model and write the checked package.

    ``report``: the technical report (PDF) the instructions require, put in the zip's root folder.
    Refused, before anything is written, on any error or tinyasc warning of the checks, and when the
    run's evaluation (the meta file's development results) used another calibration temperature than
    the one its probabilities now get.
    """
    run, out_dir = RunDir(run_dir), Path(out_dir)
    errors = check_label(label)
    size, metrics = run.size(), run.evaluation()
    if not size:
        errors.append(f"{run / run.SIZE_JSON}: missing; run a finished tinyasc train first")
    if not metrics:
        errors.append(f"{run / run.EVALUATION}: missing; run tinyasc evaluate RUN_DIR first")
    elif abs(float(metrics.get("temperature", 1.0)) - run.temperature) > 1e-9:
        errors.append(
            f"{run / run.EVALUATION}: evaluated at temperature {float(metrics.get('temperature', 1.0)):.4f} but "
            f"the run is now calibrated at {run.temperature:.4f}; run tinyasc evaluate RUN_DIR again so that "
            "the development results in the meta file match the submitted probabilities"
        )
    meta_path = Path(meta_path)
    user: object = {}
    if not meta_path.exists():
        errors.append(f"{meta_path}: meta file not found (submission: name, abbreviation, authors)")
    else:
        user, yaml_errors = read_meta_yaml(meta_path.read_bytes(), str(meta_path))
        errors += yaml_errors
        if not yaml_errors and not isinstance(user or {}, dict):
            errors.append(f"{meta_path}: expected a mapping with submission: and system:")
    if report is not None and (not Path(report).is_file() or Path(report).suffix.lower() != ".pdf"):
        errors.append(f"{report}: the technical report must be an existing .pdf file")
    if errors:
        raise SubmissionError("\n".join(errors))
    user = user or {}
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
    found = check_output(output, names)
    found += check_meta(meta, label)
    problems = check_size(size) + found.errors + found.warnings
    if problems:
        raise SubmissionError("package refused:\n" + "\n".join(problems))
    root = package_root(label)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(f"{root}/task1/{label}/{label}.output.csv", output)
        z.writestr(f"{root}/task1/{label}/{label}.meta.yaml", meta_text)
        if report is not None:
            z.writestr(f"{root}/{root}_technical_report.pdf", Path(report).read_bytes())
    found = check_package(buf.getvalue(), names)
    pdf_note = [w for w in found.warnings if "technical report" in w]  # the caller says it; not a refusal
    if found.errors or len(found.warnings) > len(pdf_note):
        raise SubmissionError("package refused:\n" + "\n".join(found.errors + found.warnings))
    atomic_write_text(out_dir / "task1" / label / f"{label}.output.csv", output)
    atomic_write_text(out_dir / "task1" / label / f"{label}.meta.yaml", meta_text)
    zip_path = out_dir / f"{root}.zip"
    atomic_write_bytes(zip_path, buf.getvalue())
    return zip_path
