"""Write a synthetic corpus in the exact TAU 2020 Mobile layout, mirroring the real fold-1 split.

The file list is a stratified subset of the real ``fold1_train.csv`` / ``fold1_evaluate.csv`` shipped
with the package (real names, cities, locations, segments). Files sharing
``scene-city-location-segment`` are parallel recordings: one rendered source through several devices.
Generation is deterministic per (seed, file name) and resumable: finished files are kept, each file is
written atomically, and the CSVs are written last, so a half-made corpus never loads as complete.
"""

from __future__ import annotations

import json
import logging
import os
import random
from collections import defaultdict
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from tinyasc.data.index import Clip, DataError, _read_rows, _tau_clip
from tinyasc.data.synth.devices import apply_device
from tinyasc.data.synth.dsp import SR, rng_for
from tinyasc.data.synth.scenes import render_scene
from tinyasc.data.tau import CITIES, DEVICES, EVALUATION_2021_COUNT, SCENES
from tinyasc.io import atomic_write_json, atomic_write_text
from tinyasc.procs import worker_pool

log = logging.getLogger(__name__)

# Bumped whenever the generated audio changes, so a resumed corpus never mixes two generators.
SYNTH_VERSION = 1


@dataclass(frozen=True)
class SynthSpec:
    """What to generate; stored as ``synth.json`` in the corpus so a resume cannot mix settings."""

    per_class_device: int | None = 20
    fraction: float | None = None
    duration: float = 10.0
    seed: int = 0
    evaluate_fraction: float | None = None  # fraction of the evaluate split (default: as the train split)

    def __post_init__(self):
        if (self.per_class_device is None) == (self.fraction is None):
            raise ValueError("give exactly one of per_class_device or fraction")
        if self.per_class_device is not None and self.per_class_device < 1:
            raise ValueError(f"per_class_device must be >= 1, got {self.per_class_device}")
        if self.fraction is not None and not 0 < self.fraction <= 1:
            raise ValueError(f"fraction must be in (0, 1], got {self.fraction}")
        if self.duration <= 0:
            raise ValueError(f"duration must be > 0 seconds, got {self.duration}")
        if self.evaluate_fraction is not None and not 0 < self.evaluate_fraction <= 1:
            raise ValueError(f"evaluate_fraction must be in (0, 1], got {self.evaluate_fraction}")


def real_split() -> dict[str, list[Clip]]:
    """The real fold-1 train and evaluate lists shipped in ``tinyasc/data/resources``."""
    base = resources.files("tinyasc.data") / "resources" / "evaluation_setup"
    out = {}
    for split in ("train", "evaluate"):
        with resources.as_file(base / f"fold1_{split}.csv") as path:
            out[split] = [
                _tau_clip(path, i, f, lab, split)
                for i, (f, lab) in _read_rows(path, ["filename", "scene_label"])
            ]
    return out


def select_files(spec: SynthSpec) -> list[Clip]:
    """Stratified subset per (split, scene, device) of the real split, keeping parallel recordings.

    For each split and scene, segments are visited in a seeded random order, those recorded by more
    devices first; a segment's file on device d is taken while d's quota for that scene is open. The
    subset therefore keeps the real data's parallel structure (one source, several devices) and its
    spread over locations.
    """
    rng = random.Random(spec.seed)
    chosen: list[Clip] = []
    for split, clips in real_split().items():
        by_scene: dict[str, list[Clip]] = defaultdict(list)
        for c in clips:
            by_scene[c.scene].append(c)
        for scene in sorted(by_scene):
            segments: dict[str, list[Clip]] = defaultdict(list)
            per_device: dict[str, int] = defaultdict(int)
            for c in by_scene[scene]:
                segments[f"{c.city}-{c.location}-{c.segment}"].append(c)
                per_device[c.device] += 1
            quota = {d: _quota(spec, n, split) for d, n in per_device.items()}
            keys = sorted(segments)
            rng.shuffle(keys)
            keys.sort(key=lambda k: -len(segments[k]))
            for key in keys:
                for c in sorted(segments[key], key=lambda c: c.device):
                    if quota[c.device] > 0:
                        chosen.append(c)
                        quota[c.device] -= 1
                if not any(quota.values()):
                    break
    return chosen


def _quota(spec: SynthSpec, available: int, split: str = "train") -> int:
    if split == "evaluate" and spec.evaluate_fraction is not None:
        return max(1, round(spec.evaluate_fraction * available))
    if spec.per_class_device is not None:
        return min(spec.per_class_device, available)
    return max(1, round(spec.fraction * available))


def _render_group(args: tuple[str, list[tuple[str, str, str]], int, int, str]) -> int:
    """Render one source segment and write it through each device. Returns files written."""
    import soundfile as sf

    key, outputs, seed, n, root = args
    scene, city, location, segment = key.split("|")
    todo = [(path, dev) for path, dev, _ in outputs if not (Path(root) / path).exists()]
    if not todo:
        return 0
    source = render_scene(scene, city, location, segment, seed, n)
    for path, dev in todo:
        y = apply_device(source, dev, key, seed)
        target = Path(root) / path
        tmp = target.with_name(f".{target.name}.tmp")
        sf.write(str(tmp), np.clip(y, -1.0, 1.0).astype(np.float32), SR, subtype="PCM_24", format="WAV")
        os.replace(tmp, target)
    return len(todo)


def _run_groups(tasks: list, workers: int, progress: bool) -> int:
    from tqdm import tqdm

    written = 0
    bar = tqdm(total=len(tasks), desc="synth", unit="segment", disable=not progress)
    if workers <= 1:
        for t in tasks:
            written += _render_group(t)
            bar.update()
    else:
        with worker_pool(workers) as pool:
            for w in pool.map(_render_group, tasks, chunksize=4):
                written += w
                bar.update()
    bar.close()
    return written


def _prepare(out: Path, meta: dict) -> None:
    (out / "audio").mkdir(parents=True, exist_ok=True)
    sidecar = out / "synth.json"
    if sidecar.exists():
        old = json.loads(sidecar.read_text())
        if old != meta:
            raise DataError(
                f"{out}: holds a corpus made with other settings ({sidecar}: {old}); "
                f"choose an empty folder or the same settings ({meta})"
            )
    else:
        atomic_write_json(sidecar, meta)
    for stale in (out / "audio").glob(".*.tmp"):
        stale.unlink()


def write_corpus(out: str | Path, spec: SynthSpec, workers: int = 1, progress: bool = False) -> dict:
    """Write the development-layout corpus; returns counts per split."""
    out = Path(out)
    settings = {k: v for k, v in asdict(spec).items() if k != "evaluate_fraction" or v is not None}
    _prepare(out, {"layout": "development", "synth_version": SYNTH_VERSION, **settings})
    clips = select_files(spec)
    n = int(round(spec.duration * SR))
    groups: dict[str, list] = defaultdict(list)
    for c in clips:
        groups[f"{c.scene}|{c.city}|{c.location}|{c.segment}"].append((c.filename, c.device, c.split))
    tasks = [(k, v, spec.seed, n, str(out)) for k, v in sorted(groups.items())]
    written = _run_groups(tasks, workers, progress)

    setup = out / "evaluation_setup"
    train = [c for c in clips if c.split == "train"]
    evaluate = [c for c in clips if c.split == "evaluate"]
    atomic_write_text(
        setup / "fold1_train.csv", _csv(["filename", "scene_label"], [(c.filename, c.scene) for c in train])
    )
    atomic_write_text(
        setup / "fold1_evaluate.csv",
        _csv(["filename", "scene_label"], [(c.filename, c.scene) for c in evaluate]),
    )
    atomic_write_text(setup / "fold1_test.csv", _csv(["filename"], [(c.filename,) for c in evaluate]))
    meta_rows = [
        (c.filename, c.scene, f"{c.city}-{c.location}", c.device)
        for c in sorted(clips, key=lambda c: c.filename)
    ]
    atomic_write_text(
        out / "meta.csv", _csv(["filename", "scene_label", "identifier", "source_label"], meta_rows)
    )
    return {"train": len(train), "evaluate": len(evaluate), "written": written, "segments": len(tasks)}


def _csv(header: list[str], rows: list[tuple]) -> str:
    return "\n".join(["\t".join(header)] + ["\t".join(map(str, r)) for r in rows]) + "\n"


def evaluation_items(per_class_device: int | None, seed: int) -> list[tuple[str, str, str, str, str]]:
    """(scene, city, location, segment, device) of a 2021-style evaluation set: 12 cities, 15 devices.

    ``per_class_device=None`` gives exactly the real set's 7,920 files (52 or 53 per scene and device);
    a number gives that many per scene and device (a smaller, named test list). Locations and segments
    are new numbers (>= 5000), so they never collide with the development set. Each segment is recorded
    by several devices (parallel recordings), as in the real set.
    """
    combos = [(s_i, scene, dev) for s_i, scene in enumerate(SCENES) for dev in DEVICES]
    if per_class_device is None:
        base, extra = divmod(EVALUATION_2021_COUNT, len(combos))
        quotas = [base + (k < extra) for k in range(len(combos))]
    else:
        quotas = [per_class_device] * len(combos)
    rng = rng_for(seed, "evaluation-items")
    items: set[tuple[str, str, str, str, str]] = set()
    for (s_i, scene, dev), quota in zip(combos, quotas, strict=True):
        segments = 50000 + s_i * 1000, 3 * max(quotas)
        mine = 0
        while mine < quota:  # parallel recordings share segments; a repeated draw is drawn again
            city = CITIES[int(rng.integers(len(CITIES)))]
            location = str(5000 + s_i * 100 + int(rng.integers(40)))
            item = (scene, city, location, str(segments[0] + int(rng.integers(0, segments[1]))), dev)
            if item not in items:
                items.add(item)
                mine += 1
    return sorted(items)


def write_evaluation_corpus(
    out: str | Path,
    per_class_device: int | None = None,
    duration: float = 10.0,
    seed: int = 0,
    workers: int = 1,
    reference: str | Path | None = None,
    progress: bool = False,
) -> dict:
    """Write the 2021 evaluation-set layout: ``audio/<n>.wav``, ``evaluation_setup/fold1_test.csv``.

    By default the real set's list, ``audio/0.wav`` ... ``audio/7919.wav``, so that a submission built on
    it passes the official validator; ``per_class_device`` makes a smaller test list instead.

    No labels go into the tree; the reference (``filename scene_label identifier source_label``) goes
    to ``reference`` (default: ``<out>.reference.csv`` beside the folder) for our own scoring.
    """
    out = Path(out)
    reference = Path(reference) if reference else out.with_name(out.name + ".reference.csv")
    _prepare(
        out,
        {"layout": "evaluation", "per_class_device": per_class_device, "duration": duration, "seed": seed},
    )
    items = evaluation_items(per_class_device, seed)
    order = list(range(len(items)))
    rng_for(seed, "evaluation-order").shuffle(order)
    names = {items[j]: f"audio/{i}.wav" for i, j in enumerate(order)}
    groups: dict[str, list] = defaultdict(list)
    for scene, city, loc, seg, dev in items:
        groups[f"{scene}|{city}|{loc}|{seg}"].append((names[(scene, city, loc, seg, dev)], dev, "test"))
    n = int(round(duration * SR))
    tasks = [(k, v, seed, n, str(out)) for k, v in sorted(groups.items())]
    written = _run_groups(tasks, workers, progress)
    listing = sorted(names.values(), key=lambda p: int(Path(p).stem))
    atomic_write_text(
        out / "evaluation_setup" / "fold1_test.csv", _csv(["filename"], [(p,) for p in listing])
    )
    ref_rows = sorted(
        ((names[it], it[0], f"{it[1]}-{it[2]}", it[4]) for it in items), key=lambda r: int(Path(r[0]).stem)
    )
    atomic_write_text(reference, _csv(["filename", "scene_label", "identifier", "source_label"], ref_rows))
    return {"test": len(items), "written": written, "reference": str(reference)}
