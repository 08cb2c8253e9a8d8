"""Facts of TAU Urban Acoustic Scenes 2020 Mobile: scenes, devices, cities, file names.

File names follow ``audio/<scene>-<city>-<location>-<segment>-<device>.wav`` (reference section 3).
Files that share ``<scene>-<city>-<location>-<segment>`` are time-aligned parallel recordings.

The 2022 Mobile release (the 2022-2025 editions) cuts every 10-s file into 1-s snippets named
``audio/<scene>-<city>-<location>-<segment>-<snippet>-<device>.wav`` with ``snippet`` 0 to 9
(``airport-barcelona-0-0-0-a.wav``, ``airport-barcelona-0-0-1-a.wav``, ...); ``data/tau2022.py`` makes it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath

# Alphabetical: the order of every probability vector and output column (dcase_util scene_labels()).
SCENES: tuple[str, ...] = (
    "airport",
    "bus",
    "metro",
    "metro_station",
    "park",
    "public_square",
    "shopping_mall",
    "street_pedestrian",
    "street_traffic",
    "tram",
)

# Development devices, then those only in the 2021 evaluation set (D and S7-S11).
DEV_DEVICES: tuple[str, ...] = ("a", "b", "c", "s1", "s2", "s3", "s4", "s5", "s6")
EVAL_ONLY_DEVICES: tuple[str, ...] = ("d", "s7", "s8", "s9", "s10", "s11")
DEVICES: tuple[str, ...] = DEV_DEVICES + EVAL_ONLY_DEVICES

DEVICE_GROUPS: dict[str, tuple[str, ...]] = {
    "real": ("a", "b", "c"),
    "seen": ("s1", "s2", "s3"),
    "unseen": ("s4", "s5", "s6"),
}
EVAL_DEVICE_GROUPS: dict[str, tuple[str, ...]] = {
    "real_seen": ("a", "b", "c"),
    "real_unseen": ("d",),
    "sim_seen": ("s1", "s2", "s3"),
    "sim_unseen": ("s4", "s5", "s6", "s7", "s8", "s9", "s10", "s11"),
}

DEV_CITIES: tuple[str, ...] = (
    "barcelona",
    "helsinki",
    "lisbon",
    "london",
    "lyon",
    "milan",
    "paris",
    "prague",
    "stockholm",
    "vienna",
)
EVAL_ONLY_CITIES: tuple[str, ...] = ("amsterdam", "madrid")
CITIES: tuple[str, ...] = DEV_CITIES + EVAL_ONLY_CITIES

# The 2021 evaluation set is a fixed list: audio/0.wav ... audio/7919.wav (the official validator
# checks exactly these names and that count).
EVALUATION_2021_COUNT = 7920


def evaluation_2021_files() -> list[str]:
    return [f"audio/{i}.wav" for i in range(EVALUATION_2021_COUNT)]


DEV_ROOT_NAME = "TAU-urban-acoustic-scenes-2020-mobile-development"
EVAL_ROOT_NAME = "TAU-urban-acoustic-scenes-2021-mobile-evaluation"

_SCENE_ALT = "|".join(sorted(SCENES, key=len, reverse=True))
_NAME_RE = re.compile(
    rf"^(?P<scene>{_SCENE_ALT})-(?P<city>[a-z]+)-(?P<location>\d+)-(?P<segment>\d+)"
    rf"(?:-(?P<snippet>\d+))?-(?P<device>[a-z]+\d*)$"
)


@dataclass(frozen=True)
class ClipName:
    """Fields encoded in a TAU development file name."""

    scene: str
    city: str
    location: str
    segment: str
    device: str
    snippet: str | None = None  # the 1-s piece of a 2022-layout file

    @property
    def clip_segment(self) -> str:
        """The segment as the index keeps it: ``segment``, or ``segment-snippet`` in the 2022 layout, so
        that the 1-s snippets of parallel recordings still share their key."""
        return self.segment if self.snippet is None else f"{self.segment}-{self.snippet}"

    @property
    def recording(self) -> str:
        """``scene-city-location-segment-device``: the 10-s recording a file is (or was cut from)."""
        return f"{self.scene}-{self.city}-{self.location}-{self.segment}-{self.device}"

    @property
    def identifier(self) -> str:
        """``city-location``: the recording-location identifier of meta.csv."""
        return f"{self.city}-{self.location}"

    @property
    def parallel_key(self) -> str:
        """``scene-city-location-segment``: shared by the parallel recordings of one segment."""
        return f"{self.scene}-{self.city}-{self.location}-{self.clip_segment}"


class FileNameError(ValueError):
    """A file name that does not follow the TAU naming scheme."""


def parse_filename(filename: str) -> ClipName:
    """Parse ``[audio/]<scene>-<city>-<location>-<segment>[-<snippet>]-<device>.wav``.

    Raises FileNameError naming the file and what was expected for an unknown scene, city or device.
    """
    stem = PurePosixPath(filename).stem
    m = _NAME_RE.match(stem)
    if m is None:
        scene = next((s for s in SCENES if stem.startswith(s + "-")), None)
        if scene is None:
            raise FileNameError(
                f"{filename!r}: unknown scene in file name; expected one of {', '.join(SCENES)}"
            )
        raise FileNameError(
            f"{filename!r}: expected '<scene>-<city>-<location>-<segment>[-<snippet>]-<device>.wav' "
            "with numeric location, segment and snippet"
        )
    name = ClipName(**m.groupdict())
    if name.city not in CITIES:
        raise FileNameError(f"{filename!r}: unknown city {name.city!r}; expected one of {', '.join(CITIES)}")
    if name.device not in DEVICES:
        raise FileNameError(
            f"{filename!r}: unknown device {name.device!r}; expected one of {', '.join(DEVICES)}"
        )
    return name


def device_group(device: str) -> str:
    """Group of a development device: real (a-c), seen (s1-s3) or unseen (s4-s6)."""
    for group, members in DEVICE_GROUPS.items():
        if device in members:
            return group
    return "unseen"


def device_sort_key(device: str) -> tuple[int, int, str]:
    """Canonical device order: a, b, c, d, then s1 ... s11, then anything else alphabetically."""
    if not device:  # unknown (an evaluation-set file)
        return (3, 0, "")
    if len(device) == 1:
        return (0, ord(device), "")
    if device[0] == "s" and device[1:].isdigit():
        return (1, int(device[1:]), "")
    return (2, 0, device)
