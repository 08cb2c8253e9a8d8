"""The complexity rules of each DCASE low-complexity scene-classification edition, as data.

Sources (reference/top_systems.md, the editions' task pages and baseline READMEs):
- 2021 Task 1A: 128 KB of non-zero parameters counted at the bytes of their storage type
  (``model_size_calculation.py``); MACs not limited; 10-s clips.
- 2022 and 2023 Task 1: 128,000 parameters, all of them counted, the variable type fixed to int8 (so one
  byte each, whatever the model stores), and at most 30 million MACs per 1 s of audio; 1-s clips. The
  organisers measured both with NeSsi: ``torchinfo.summary(...).total_params`` and ``.total_mult_adds``
  (batch-norm running statistics are buffers and not counted). 2023 ranks by a weighted rank of
  accuracy, memory and MACs; the limits are 2022's.
- 2024 Task 1: 128 kB of parameter memory, all parameters at the bytes of the type they are stored in (the
  baseline: 61,148 parameters at float16), 30 MMACs per second; training on 5/10/25/50/100% subsets.
- 2025 Task 1: 2024's limits, the 25% subset, and the recording device known at test time (device-specific
  models or fine-tuning allowed).

A kB here is 1,000 bytes: 128,000 is the stricter reading of every edition's "128 K".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

RuleName = Literal["dcase2021", "dcase2022", "dcase2023", "dcase2024", "dcase2025"]
Counting = Literal["nonzero-bytes", "params-int8", "param-bytes"]


@dataclass(frozen=True)
class Rules:
    name: str
    clip_seconds: float  # the analysis segment the task scores (and the MACs limit refers to)
    counting: Counting
    limit: int  # bytes (params-int8: parameters, one byte each)
    macs_per_second: int | None  # None: not limited
    layout: Literal["tau2020", "tau2022"]
    subsets: tuple[int, ...] = ()  # percentages of the training split an edition trains on
    device_specific: bool = False  # the device id may select a model at test time
    note: str = ""

    @property
    def counted_as(self) -> str:
        return {
            "nonzero-bytes": "non-zero parameters at the bytes of their storage type",
            "params-int8": "all parameters, one byte each (int8)",
            "param-bytes": "all parameters at the bytes of their storage type",
        }[self.counting]


RULES: dict[str, Rules] = {
    r.name: r
    for r in (
        Rules("dcase2021", 10.0, "nonzero-bytes", 128_000, None, "tau2020", note="Task 1A, 10-s clips"),
        Rules("dcase2022", 1.0, "params-int8", 128_000, 30_000_000, "tau2022", note="Task 1, 1-s clips"),
        Rules(
            "dcase2023",
            1.0,
            "params-int8",
            128_000,
            30_000_000,
            "tau2022",
            note="Task 1, 1-s clips; ranked by a weighted rank of accuracy, memory and MACs",
        ),
        Rules(
            "dcase2024",
            1.0,
            "param-bytes",
            128_000,
            30_000_000,
            "tau2022",
            subsets=(5, 10, 25, 50, 100),
            note="Task 1, data-efficient: one system per training subset",
        ),
        Rules(
            "dcase2025",
            1.0,
            "param-bytes",
            128_000,
            30_000_000,
            "tau2022",
            subsets=(25,),
            device_specific=True,
            note="Task 1, the 25% subset; the device is known at test time",
        ),
    )
}


assert set(RULES) == set(get_args(RuleName))


def get_rules(name: str) -> Rules:
    if name not in RULES:
        raise ValueError(f"--rules {name!r}: expected one of {', '.join(RULES)}")
    return RULES[name]
