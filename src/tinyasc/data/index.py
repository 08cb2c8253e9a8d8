"""ClipIndex: typed rows from a TAU 2020 Mobile root or a generic labelled CSV, plus the validation split.

TAU layout (reference section 3)::

    ROOT/audio/*.wav
    ROOT/meta.csv                              optional: every field derives from the file name
    ROOT/evaluation_setup/fold1_train.csv      filename<TAB>scene_label, header row
    ROOT/evaluation_setup/fold1_evaluate.csv   filename<TAB>scene_label, header row
    ROOT/evaluation_setup/fold1_test.csv       filename, header row (same files as evaluate)

An evaluation-set root (2021 layout: ``audio/<n>.wav`` and only ``fold1_test.csv``) loads as a
``test`` split without labels.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
import stat
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

from tinyasc.data.tau import SCENES, FileNameError, device_sort_key, parse_filename
from tinyasc.io import atomic_write_json

SPLITS = ("train", "evaluate", "test")

log = logging.getLogger(__name__)


class DataError(ValueError):
    """Bad dataset input; the message names the file, line and what was expected."""


@dataclass(frozen=True)
class Clip:
    """One audio file of a dataset. ``filename`` is relative to the dataset root (``audio/x.wav``)."""

    filename: str
    scene: str | None
    city: str
    location: str
    segment: str
    device: str
    split: str
    fold: str | None = None  # a generic dataset's predefined fold

    @property
    def recording(self) -> str:
        """The file this clip is or was cut from: the 1-s snippets of one 10-s file of the 2022 layout
        (segment ``<segment>-<snippet>``) share it, so that no split puts them on both sides."""
        if "-" not in self.segment:
            return self.filename
        head, _snippet, device = self.filename.rsplit("-", 2)
        return f"{head}-{device}"

    @property
    def identifier(self) -> str:
        """Recording-location key (``city-location``); the file name when the location is unknown."""
        return f"{self.city}-{self.location}" if self.location else self.filename


@dataclass
class ClipIndex:
    """All clips of one dataset root, the class names and where they came from."""

    root: Path
    classes: tuple[str, ...]
    clips: list[Clip]
    kind: str  # "tau", "tau-evaluation" or "generic"

    def split(self, name: str) -> list[Clip]:
        if name not in SPLITS:
            raise KeyError(f"unknown split {name!r}; expected one of {', '.join(SPLITS)}")
        return [c for c in self.clips if c.split == name]

    def label_index(self, clip: Clip) -> int:
        return self.classes.index(clip.scene)

    def path(self, clip: Clip) -> Path:
        return self.root / clip.filename

    def summary(self) -> dict:
        """Counts per split, device and class, and the locations shared by train and evaluate."""
        out: dict = {"root": str(self.root), "kind": self.kind, "classes": list(self.classes), "splits": {}}
        for split in SPLITS:
            clips = self.split(split)
            if not clips:
                continue
            out["splits"][split] = {
                "files": len(clips),
                "devices": dict(
                    sorted(Counter(c.device for c in clips).items(), key=lambda kv: device_sort_key(kv[0]))
                ),
                "classes": {k: v for k, v in Counter(c.scene for c in clips).items() if k is not None},
                "locations": len({c.identifier for c in clips if c.location}),
            }
        train_loc = {c.identifier for c in self.split("train") if c.location}
        eval_loc = {c.identifier for c in self.split("evaluate") if c.location}
        out["shared_locations"] = sorted(train_loc & eval_loc)
        return out

    def to_json(self) -> str:
        return json.dumps([asdict(c) for c in self.clips])


def _read_rows(path: Path, header: list[str]) -> list[tuple[int, list[str]]]:
    """Tab-separated rows with their 1-based line numbers; the header must start with ``header``."""
    try:
        text = path.read_text(encoding="utf-8-sig")  # a byte-order mark from a spreadsheet is dropped
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise DataError(f"{path}: a folder, not a CSV file") from None
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e})") from None
    lines = text.splitlines()
    if not lines:
        raise DataError(f"{path}: empty file; expected header {'<TAB>'.join(header)}")
    got = lines[0].split("\t")
    if got[: len(header)] != header:
        raise DataError(f"{path}:1: header {lines[0]!r}; expected {'<TAB>'.join(header)!r}")
    rows = []
    for i, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != len(got):
            raise DataError(
                f"{path}:{i}: malformed row {line!r}: {len(fields)} tab-separated fields, expected {len(got)}"
            )
        rows.append((i, fields))
    return rows


def _tau_clip(path: Path, line: int, filename: str, label: str | None, split: str) -> Clip:
    try:
        name = parse_filename(filename)
    except FileNameError as e:
        raise DataError(f"{path}:{line}: {e}") from None
    if label is not None:
        if label not in SCENES:
            raise DataError(f"{path}:{line}: unknown scene {label!r}; expected one of {', '.join(SCENES)}")
        if label != name.scene:
            raise DataError(f"{path}:{line}: scene_label {label!r} disagrees with file name {filename!r}")
    return Clip(filename, name.scene, name.city, name.location, name.clip_segment, name.device, split)


def load_tau(root: str | Path, check_audio: bool = True, memo_dir: Path | None = None) -> ClipIndex:
    """Index a TAU 2020 Mobile development root (or a 2021-style evaluation root)."""
    root = Path(root)
    setup = root / "evaluation_setup"
    if not setup.is_dir():
        raise DataError(f"{root}: no evaluation_setup/ folder; expected the TAU 2020 Mobile layout")
    train_csv, eval_csv, test_csv = (setup / f"fold1_{s}.csv" for s in SPLITS)
    if not train_csv.exists() and test_csv.exists():
        index = _load_tau_evaluation(root, test_csv)
    else:
        clips: list[Clip] = []
        seen: dict[str, str] = {}
        for split, csv in (("train", train_csv), ("evaluate", eval_csv)):
            for line, (filename, label) in _read_rows(csv, ["filename", "scene_label"]):
                if filename in seen:
                    raise DataError(
                        f"{csv}:{line}: duplicate file {filename!r} (already listed in {seen[filename]})"
                    )
                seen[filename] = f"{csv.name}"
                clips.append(_tau_clip(csv, line, filename, label, split))
        if test_csv.exists():
            _check_test_list(test_csv, [c.filename for c in clips if c.split == "evaluate"])
        if (root / "meta.csv").exists():
            _check_meta(root / "meta.csv")
        index = ClipIndex(root, SCENES, clips, "tau")
    if check_audio:
        check_audio_files(index, memo_dir=memo_dir)
    return index


def _load_tau_evaluation(root: Path, test_csv: Path) -> ClipIndex:
    clips = []
    seen: set[str] = set()
    for line, (filename, *_) in _read_rows(test_csv, ["filename"]):
        if filename in seen:
            raise DataError(f"{test_csv}:{line}: duplicate file {filename!r}")
        seen.add(filename)
        clips.append(Clip(filename, None, "", "", "", "", "test"))
    return ClipIndex(root, SCENES, clips, "tau-evaluation")


def _check_test_list(test_csv: Path, evaluate_files: list[str]) -> None:
    listed = [f for _, (f, *_) in _read_rows(test_csv, ["filename"])]
    if sorted(listed) != sorted(evaluate_files):
        extra = sorted(set(listed) - set(evaluate_files))[:3]
        missing = sorted(set(evaluate_files) - set(listed))[:3]
        raise DataError(
            f"{test_csv}: must list the same files as fold1_evaluate.csv "
            f"(only in test: {extra}, only in evaluate: {missing})"
        )


def _check_meta(meta: Path) -> None:
    """meta.csv is optional; when present its rows must agree with their file names."""
    for line, (filename, label, identifier, source, *_) in _read_rows(
        meta, ["filename", "scene_label", "identifier", "source_label"]
    ):
        clip = _tau_clip(meta, line, filename, label, "meta")
        if identifier != clip.identifier or source != clip.device:
            raise DataError(
                f"{meta}:{line}: identifier/source_label {identifier!r}/{source!r} disagree with "
                f"file name {filename!r} (expected {clip.identifier!r}/{clip.device!r})"
            )


def check_audio_files(index: ClipIndex, show: int = 5, memo_dir: Path | None = None) -> None:
    """Every listed file exists and is readable audio; lists the first few missing and counts the rest.

    Reading every header is the slow part (17,000 files of the real data). With ``memo_dir``, a check
    that passed is remembered there under a digest of every file's name, size and modification time;
    the next check of the same unchanged files stats them and skips the headers."""
    import soundfile as sf

    stats, missing = [], []
    for c in index.clips:
        try:
            st = (index.root / c.filename).stat()
        except OSError:
            missing.append(c.filename)
            continue
        if not stat.S_ISREG(st.st_mode):
            missing.append(c.filename)
        stats.append(f"{c.filename}\t{st.st_size}\t{st.st_mtime_ns}")
    if missing:
        more = f" and {len(missing) - show} more" if len(missing) > show else ""
        raise DataError(
            f"{index.root}: {len(missing)} listed audio file(s) missing: {', '.join(missing[:show])}{more}"
        )
    digest = hashlib.sha256(f"{index.root.resolve()}\n{chr(10).join(stats)}".encode()).hexdigest()[:24]
    memo = memo_dir / f"audio-checked-{digest}.json" if memo_dir is not None else None
    if memo is not None and memo.exists():
        return
    for c in index.clips:
        path = index.root / c.filename
        try:
            info = sf.info(str(path))
        except Exception as e:  # soundfile raises LibsndfileError / RuntimeError subclasses
            raise DataError(f"{path}: not readable audio ({e})") from None
        if info.frames == 0:  # what the header tells; NaN, Inf and truncation show when the cache reads it
            raise DataError(f"{path}: empty audio (0 samples)")
    if memo is not None:
        try:
            atomic_write_json(memo, {"root": str(index.root.resolve()), "files": len(stats)})
        except OSError as e:  # a read-only cache: checked again next time, nothing else changes
            log.warning("could not remember the audio check in %s (%s)", memo, e)


def load_generic(
    csv: str | Path,
    audio_root: str | Path | None = None,
    classes: list[str] | None = None,
    evaluate_folds: list[str] | None = None,
    evaluate_fraction: float = 0.2,
    seed: int = 0,
    check_audio: bool = True,
    memo_dir: Path | None = None,
) -> ClipIndex:
    """A user's labelled dataset: ``filename<TAB>scene_label`` [``fold``] [``device``] [``identifier``].

    ``filename`` is relative to ``audio_root`` (default: the CSV's folder). Classes are the given names
    (their order is the output order) or the sorted labels found. With a ``fold`` column the files of
    ``evaluate_folds`` (default: the last fold in sorted order) form the evaluate split; without one, a
    seeded class-stratified ``evaluate_fraction`` does. An ``identifier`` column (recording location)
    makes the validation split location-disjoint as for TAU.
    """
    csv = Path(csv)
    root = Path(audio_root) if audio_root is not None else csv.parent
    rows = _read_rows(csv, ["filename", "scene_label"])
    header = csv.read_text(encoding="utf-8-sig").splitlines()[0].split("\t")
    unknown_cols = set(header) - {"filename", "scene_label", "fold", "device", "identifier"}
    if unknown_cols:
        raise DataError(
            f"{csv}:1: unknown column(s) {sorted(unknown_cols)}; expected fold, device, identifier"
        )
    col = {name: i for i, name in enumerate(header)}
    labels = sorted({r[1].strip() for _, r in rows if r[1].strip()})
    if classes is None:
        classes = labels
    seen: set[str] = set()
    parsed = []
    for line, r in rows:
        filename, label = r[0].strip(), r[1].strip()
        if not filename:
            raise DataError(f"{csv}:{line}: empty file name")
        if not label:
            raise DataError(f"{csv}:{line}: {filename}: empty scene label")
        if label not in classes:
            raise DataError(f"{csv}:{line}: unknown scene {label!r}; expected one of {', '.join(classes)}")
        if filename in seen:
            raise DataError(f"{csv}:{line}: duplicate file {filename!r}")
        seen.add(filename)
        fold = r[col["fold"]] if "fold" in col else None
        device = r[col["device"]] if "device" in col else "unknown"
        ident = r[col["identifier"]] if "identifier" in col else ""
        parsed.append((filename, label, fold, device, ident))
    if "fold" in col:
        folds = sorted({p[2] for p in parsed})
        chosen = set(evaluate_folds or folds[-1:])
        if not chosen <= set(folds):
            raise DataError(
                f"{csv}: evaluate folds {sorted(chosen - set(folds))} not in the fold column {folds}"
            )
        in_eval = {p[0] for p in parsed if p[2] in chosen}
    else:
        rng = random.Random(seed)
        in_eval = set()
        for label in classes:
            names = sorted(p[0] for p in parsed if p[1] == label)
            rng.shuffle(names)
            in_eval.update(names[: int(round(evaluate_fraction * len(names)))])
    clips = [
        Clip(f, lab, "", ident, "", dev, "evaluate" if f in in_eval else "train", fold)
        for f, lab, fold, dev, ident in parsed
    ]
    unused = [c for c in classes if c not in labels]
    if unused:
        log.warning(
            "%s: class(es) %s have no file; the model will still have an output for each", csv, unused
        )
    index = ClipIndex(root, tuple(classes), clips, "generic")
    if check_audio:
        check_audio_files(index, memo_dir=memo_dir)
    return index


def _dcase_shuffle(x: list, rng: random.Random) -> None:
    """In place, as ``random.shuffle(x, random)`` did: ``j = floor(random() * (i + 1))`` for i from the end."""
    for i in reversed(range(1, len(x))):
        j = int(rng.random() * (i + 1))
        x[i], x[j] = x[j], x[i]


def validation_split(
    clips: list[Clip], fraction: float = 0.3, seed: int = 0, iterations: int = 100
) -> tuple[list[Clip], list[Clip]]:
    """Split training clips into (train, validation) as the 2021 baseline (reference section 1.3).

    dcase_util ``validation_files_balanced(balancing_mode='identifier_two_level_hierarchy')``: for each
    scene, locations are grouped by city; in each city ``ceil(fraction * n_locations)`` shuffled locations
    go to validation; of ``iterations`` random candidates the one whose file fraction is closest to
    ``fraction`` is kept. Validation and training share no location and cities stay balanced.
    Clips without a location fall back to per-file class-balanced shuffling.

    The shuffle is dcase_util's: Python 2's ``random.shuffle(x, random)`` rule on the generator seeded
    with ``seed`` (``_dcase_shuffle``), which ``Random.shuffle`` of Python 3 no longer draws; with it the
    split of the real ``fold1_train.csv`` is exactly the organisers' 4,538 validation files (tested
    against dcase_util's own output).
    """
    rng = random.Random(seed)
    val_files: set[str] = set()
    by_scene: dict[str | None, list[Clip]] = defaultdict(list)
    for c in clips:
        by_scene[c.scene].append(c)
    for scene in sorted(by_scene, key=str):
        scene_clips = by_scene[scene]
        files_per_loc: dict[str, list[str]] = defaultdict(list)
        city_of: dict[str, str] = {}
        for c in scene_clips:
            files_per_loc[c.identifier].append(c.filename)
            city_of[c.identifier] = c.city
        cities: dict[str, list[str]] = defaultdict(list)
        for loc in sorted(files_per_loc):
            cities[city_of[loc]].append(loc)
        best, best_err = None, math.inf
        for _ in range(iterations):
            chosen: list[str] = []
            for city in sorted(cities):
                locs = list(cities[city])
                _dcase_shuffle(locs, rng)
                chosen += locs[: math.ceil(fraction * len(locs))]
            n_val = sum(len(files_per_loc[loc]) for loc in chosen)
            err = abs(n_val / len(scene_clips) - fraction)
            if err < best_err:
                best, best_err = chosen, err
        for loc in best or []:
            val_files.update(files_per_loc[loc])
    train = [c for c in clips if c.filename not in val_files]
    val = [c for c in clips if c.filename in val_files]
    return train, val
