"""The 1-second layout of TAU Urban Acoustic Scenes 2022 Mobile, made from a 2020 Mobile root, and the
data-efficient training subsets of DCASE 2024.

**The 2022 layout** (DCASE 2022-2025 Task 1): the organisers cut every 10-s development file of 2020
Mobile into ten 1-s files, ``<scene>-<city>-<location>-<segment>-<snippet>-<device>.wav`` with
``snippet`` 0-9 (the k-th second), kept the fold-1 split (a file's snippets go where the file went) and
the meta.csv columns (filename, scene_label, identifier = city-location, source_label = device).
``cut_2022`` does the same from any 2020-layout root, real or synthetic, keeping each file's sample rate
and sample format. The released package has 230,350 files: ten for each of the 23,035 rows of the 2020
meta.csv (13,962 x 10 = 139,620 training and 2,968 x 10 = 29,680 test snippets in fold 1).

**The 2024 subsets** (``split5.csv`` ... ``split100.csv``, a ``filename`` column): the organisers
published them as files of the 2024 baseline's release, which cannot be fetched here. ``write_subsets``
makes subsets with the properties the task description states (about 5, 10, 25, 50 and 100% of the
training snippets; each smaller subset inside the larger ones) by a stated procedure of our own: the unit
is one 10-s recording of one device (its snippets stay together); the recordings are put in one seeded
order in which every scene, and in a scene every device, is spread evenly (systematic sampling), and the
p% subset is the first p% of that order: the subsets nest, every scene keeps its share, and the devices
keep theirs to within a recording or two per scene. Put the organisers' files in
``split_setup/`` instead and ``data.subset`` reads those.
"""

from __future__ import annotations

import os
import random
from collections import defaultdict
from pathlib import Path

from tinyasc.data.index import DataError, _read_rows
from tinyasc.data.tau import parse_filename
from tinyasc.io import atomic_write_json, atomic_write_text
from tinyasc.procs import worker_pool

SUBSETS = (5, 10, 25, 50, 100)
SPLIT_DIR = "split_setup"


def snippet_name(filename: str, k: int) -> str:
    """``audio/airport-barcelona-0-0-a.wav`` -> ``audio/airport-barcelona-0-0-<k>-a.wav``."""
    head, _, device = filename[: -len(".wav")].rpartition("-")
    return f"{head}-{k}-{device}.wav"


def _cut_one(args: tuple[str, str, str, float]) -> tuple[str, int, str]:
    """Cut one 2020 file into its 1-s snippets; (filename, snippets, error)."""
    import soundfile as sf

    src_root, out_root, filename, seconds = args
    path = Path(src_root) / filename
    try:
        info = sf.info(str(path))
        y, sr = sf.read(str(path), always_2d=True, dtype="float64")
    except (OSError, RuntimeError) as e:
        return filename, 0, f"{path}: cannot read audio ({e})"
    n = int(round(seconds * sr))
    count = len(y) // n
    if count == 0:
        return filename, 0, f"{path}: {len(y)} samples, shorter than one {seconds:g}-s snippet ({n} samples)"
    for k in range(count):
        target = Path(out_root) / snippet_name(filename, k)
        if target.exists():
            continue  # written by an earlier, interrupted cut (each file lands whole: tmp, then rename)
        tmp = target.with_name(f".{target.name}.tmp")
        sf.write(str(tmp), y[k * n : (k + 1) * n], sr, subtype=info.subtype, format="WAV")
        os.replace(tmp, target)
    return filename, count, ""


def cut_2022(
    src: str | Path, out: str | Path, workers: int = 2, seconds: float = 1.0, progress: bool = False
) -> dict:
    """Write the 2022 1-s layout of the 2020-layout root ``src`` into ``out`` (resumable)."""
    from tqdm import tqdm

    src, out = Path(src), Path(out)
    setup = src / "evaluation_setup"
    parts = {s: setup / f"fold1_{s}.csv" for s in ("train", "evaluate", "test")}
    if not parts["train"].exists():
        raise DataError(
            f"{src}: no evaluation_setup/fold1_train.csv; expected a TAU 2020 Mobile development root"
        )
    rows = {
        s: _read_rows(p, ["filename", "scene_label"] if s != "test" else ["filename"])
        for s, p in parts.items()
        if p.exists()
    }
    files = sorted({f[0] for s in ("train", "evaluate") for _, f in rows.get(s, [])})
    for f in files:
        parse_filename(f)  # a clear error before any audio is written
    (out / "audio").mkdir(parents=True, exist_ok=True)
    for stale in (out / "audio").glob(".*.tmp"):
        stale.unlink()
    tasks = [(str(src), str(out), f, seconds) for f in files]
    counts: dict[str, int] = {}
    bar = tqdm(total=len(tasks), desc="cut", unit="file", disable=not progress)
    with worker_pool(max(1, workers)) as pool:
        for filename, count, error in pool.map(_cut_one, tasks, chunksize=16):
            if error:
                raise DataError(error)
            counts[filename] = count
            bar.update()
    bar.close()

    def expand(split_rows, with_label: bool) -> str:
        lines = ["filename\tscene_label" if with_label else "filename"]
        for _, fields in split_rows:
            for k in range(counts[fields[0]]):
                name = snippet_name(fields[0], k)
                lines.append(f"{name}\t{fields[1]}" if with_label else name)
        return "\n".join(lines) + "\n"

    (out / "evaluation_setup").mkdir(exist_ok=True)
    for s, split_rows in rows.items():
        atomic_write_text(out / "evaluation_setup" / f"fold1_{s}.csv", expand(split_rows, s != "test"))
    meta = ["filename\tscene_label\tidentifier\tsource_label"]
    for f in files:
        name = parse_filename(f)
        meta += [
            f"{snippet_name(f, k)}\t{name.scene}\t{name.identifier}\t{name.device}" for k in range(counts[f])
        ]
    atomic_write_text(out / "meta.csv", "\n".join(meta) + "\n")
    record = {
        "layout": "tau2022",
        "source": str(src.resolve()),
        "seconds": seconds,
        "source_files": len(files),
        "snippets": sum(counts.values()),
        "train": sum(counts[f[0]] for _, f in rows["train"]),
        "evaluate": sum(counts[f[0]] for _, f in rows.get("evaluate", [])),
    }
    atomic_write_json(out / "tau2022.json", record)
    return record


def subset_files(train: list[str], percent: int, seed: int = 0) -> list[str]:
    """The ``percent``% subset of the training snippets by the procedure of the module docstring."""
    if not 0 < percent <= 100:
        raise ValueError(f"subset {percent}%: expected a percentage in (0, 100]")
    recordings: dict[str, list[str]] = defaultdict(list)
    by_scene: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for f in train:
        name = parse_filename(f)
        if name.recording not in recordings:
            by_scene[name.scene][name.device].append(name.recording)
        recordings[name.recording].append(f)
    # One global order, every subset a prefix of it (so the subsets nest). Systematic sampling on two
    # levels: the j-th of a scene's n recordings sits at (j + u) / n, so every scene keeps its share; in
    # a scene, the i-th of a device's m recordings sits at (i + u) / m, so devices are spread evenly.
    # Ties go to a seeded order of the scenes, and of the devices rotated by one per scene (so that no
    # device is always first among equals).
    rng = random.Random(seed)
    u = rng.random()
    scenes = sorted(by_scene)
    scene_rank = {sc: r for r, sc in enumerate(rng.sample(scenes, len(scenes)))}
    devices = sorted({d for per in by_scene.values() for d in per})
    device_rank = {d: r for r, d in enumerate(rng.sample(devices, len(devices)))}
    order: list[tuple[float, int, str]] = []
    for k, scene in enumerate(scenes):
        inside = []
        for d in sorted(by_scene[scene]):
            units = sorted(by_scene[scene][d])
            rng.shuffle(units)
            tie = (device_rank[d] + k) % len(devices)
            inside += [((i + u) / len(units), tie, rec) for i, rec in enumerate(units)]
        inside.sort()
        order += [((j + u) / len(inside), scene_rank[scene], rec) for j, (_, _, rec) in enumerate(inside)]
    order.sort()
    take = int(percent * len(order) / 100 + 0.5)
    return sorted(f for _, _, rec in order[:take] for f in recordings[rec])


def write_subsets(root: str | Path, percents: tuple[int, ...] = SUBSETS, seed: int = 0) -> dict[int, int]:
    """``split_setup/split<p>.csv`` for each percentage, from the root's fold-1 training split."""
    root = Path(root)
    train_csv = root / "evaluation_setup" / "fold1_train.csv"
    train = [fields[0] for _, fields in _read_rows(train_csv, ["filename", "scene_label"])]
    labels = {fields[0]: fields[1] for _, fields in _read_rows(train_csv, ["filename", "scene_label"])}
    sizes = {}
    for p in percents:
        files = subset_files(train, p, seed)
        text = "filename\tscene_label\n" + "".join(f"{f}\t{labels[f]}\n" for f in files)
        atomic_write_text(root / SPLIT_DIR / f"split{p}.csv", text)
        sizes[p] = len(files)
    return sizes


def subset_path(root: str | Path, percent: int) -> Path:
    return Path(root) / SPLIT_DIR / f"split{percent}.csv"


def read_subset(root: str | Path, percent: int) -> set[str]:
    """The file names of ``split_setup/split<percent>.csv`` (the organisers' or ``write_subsets``')."""
    path = subset_path(root, percent)
    if not path.exists():
        raise DataError(
            f"data.subset={percent}: {path} not found; write the subsets with `tinyasc subsets {root}` "
            "or put the organisers' split files there"
        )
    return {fields[0] for _, fields in _read_rows(path, ["filename"])}
