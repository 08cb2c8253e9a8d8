"""The verdict of an edition's complexity rules (``tinyasc.rules``): parameters, memory and MACs.

From 2022 the organisers measured with NeSsi, which reads ``torchinfo.summary(model, input)``:
``total_params`` and ``total_mult_adds``. ``torchinfo_counts`` reproduces torchinfo 1.8's counting
without importing it (a test compares the two where torchinfo is installed):
- parameters: every ``nn.Parameter`` of the layers the forward pass runs (buffers such as batch-norm
  running statistics are not parameters);
- MACs, summed over every call of every leaf module (one with no children), batch of one: a layer whose
  class name contains ``Conv`` costs (its ``weight`` and ``bias`` elements) x (output positions), that is
  ``out_ch x in_ch/groups x kh x kw x F_out x T_out`` plus ``out_ch x F_out x T_out`` for a bias; any other
  leaf with ``weight``/``bias`` costs their element count once (a linear layer on a vector: its weights
  and biases; a batch norm: 2 per channel, as the 2024 baseline README states); other parameters, pooling,
  activations and residual sums cost nothing.
This is not the conv + linear count of ``compress/macs.py`` (the 2021 tables, where MACs were not
limited): torchinfo adds biases and batch norms, a fraction of a percent for these models.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from tinyasc.compress.size import example_input, traced_pass
from tinyasc.rules import Rules


@dataclass
class TorchinfoCounts:
    params: int
    macs: int
    layers: dict[str, int] = field(default_factory=dict)  # MACs per leaf layer


def _leaf_macs(module: nn.Module, output: torch.Tensor) -> int:
    out = output[0] if isinstance(output, tuple | list) else output
    shape = tuple(out.shape)
    macs = 0
    for name, p in module.named_parameters(recurse=False):
        n = p.numel()
        if name in ("weight", "bias"):
            if "Conv" in type(module).__name__:
                macs += n * math.prod(shape[:1] + shape[2:])
            else:
                macs += shape[0] * n
        elif "weight" in name or "bias" in name:  # recurrent layers' weight_ih_l0 and the like
            macs += math.prod(shape[:2]) * n
    return macs


@torch.no_grad()
def torchinfo_counts(model: nn.Module, x: torch.Tensor | None = None) -> TorchinfoCounts:
    """Parameters and MACs of one clip (a batch of one) as torchinfo 1.8 counts them."""
    x = example_input(model) if x is None else x
    if x.shape[0] != 1:
        raise ValueError(f"torchinfo_counts: expected a batch of one clip, got {tuple(x.shape)}")
    layers: dict[str, int] = {}
    ran: set[str] = set()
    hooks = []

    def make(name: str, leaf: bool):
        def hook(module, inputs, output):
            ran.add(name)
            if leaf:
                layers[name] = layers.get(name, 0) + _leaf_macs(module, output)

        return hook

    for name, m in model.named_modules():
        hooks.append(m.register_forward_hook(make(name, next(m.children(), None) is None)))
    traced_pass(model, x, hooks)
    modules = dict(model.named_modules())
    seen: set[int] = set()
    params = 0
    for name in ran:
        for p in modules[name].parameters(recurse=False):
            if id(p) not in seen:
                seen.add(id(p))
                params += p.numel()
    return TorchinfoCounts(params, sum(layers.values()), layers)


BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


def parameter_bytes(tensors: list[tuple[str, torch.Tensor]]) -> int:
    """Bytes of the stored parameters: every stored tensor at its dtype's bytes, batch-norm running
    statistics left out (buffers, not parameters, as torchinfo counts); scales, zero points and packed
    1-bit weights count as stored."""
    return sum(t.numel() * t.element_size() for name, t in tensors if not name.endswith(BUFFERS))


@dataclass
class Verdict:
    rules: str
    counted_as: str
    params: int
    counted: int  # what the memory limit is compared with (bytes, or parameters for params-int8)
    unit: str  # "bytes" or "parameters"
    limit: int
    macs: int  # one clip of the model's input
    clip_seconds: float
    macs_per_second: int
    macs_limit: int | None
    reasons: list[str] = field(default_factory=list)  # why it fails; empty when it passes
    notes: list[str] = field(default_factory=list)

    @property
    def passes(self) -> bool:
        return not self.reasons

    def to_dict(self) -> dict:
        return {**asdict(self), "passes": self.passes}

    def table(self) -> str:
        macs_limit = f"{self.macs_limit:,}" if self.macs_limit is not None else "not limited"
        lines = [
            f"rules {self.rules}: {self.counted_as}",
            f"  parameters (torchinfo total_params)   {self.params:>14,}",
            f"  counted against the memory limit      {self.counted:>14,} {self.unit} (limit {self.limit:,})",
            f"  MACs of one {self.clip_seconds:g}-s clip (torchinfo)     {self.macs:>14,}",
            f"  MACs per second of audio              {self.macs_per_second:>14,} (limit {macs_limit})",
        ]
        lines += [f"  note: {n}" for n in self.notes]
        lines.append("PASS" if self.passes else "FAIL: " + "; ".join(self.reasons))
        return "\n".join(lines)


def verdict(
    rules: Rules,
    model: nn.Module,
    clip_seconds: float,
    stored_bytes: int,
    nonzero_bytes: int,
    extra_params: int = 0,
) -> Verdict:
    """The edition's verdict on ``model`` (float, the architecture as shipped) whose stored parameters
    take ``stored_bytes`` (``parameter_bytes``), whose 2021 count is ``nonzero_bytes``, and which reads
    clips of ``clip_seconds``. ``extra_params``: parameters stored beside the model that one inference
    does not run (device-specific heads), counted with it."""
    counts = torchinfo_counts(model)
    counts.params += extra_params
    if rules.counting == "nonzero-bytes":
        counted, unit = nonzero_bytes, "bytes"
    elif rules.counting == "params-int8":
        counted, unit = counts.params, "parameters"
    else:
        counted, unit = stored_bytes, "bytes"
    per_second = int(round(counts.macs / clip_seconds))
    v = Verdict(
        rules.name,
        rules.counted_as,
        counts.params,
        counted,
        unit,
        rules.limit,
        counts.macs,
        clip_seconds,
        per_second,
        rules.macs_per_second,
    )
    if counted > rules.limit:
        v.reasons.append(f"{counted:,} {unit} counted, over the limit of {rules.limit:,}")
    if rules.macs_per_second is not None and per_second > rules.macs_per_second:
        v.reasons.append(f"{per_second:,} MACs per second, over the limit of {rules.macs_per_second:,}")
    if not math.isclose(clip_seconds, rules.clip_seconds):
        v.reasons.append(
            f"the model reads {clip_seconds:g}-s clips; {rules.name} scores {rules.clip_seconds:g}-s clips "
            f"(train with frontend.duration={rules.clip_seconds:g})"
        )
    if rules.counting == "params-int8" and stored_bytes != counts.params:
        v.notes.append(
            f"stored as {stored_bytes:,} bytes; the rule counts every parameter at int8 whatever the storage"
        )
    return v
