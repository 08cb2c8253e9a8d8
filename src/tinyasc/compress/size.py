"""DCASE 2021 Task 1A model size: non-zero values of every stored tensor at the bytes of its dtype.

The rule of the official ``model_size_calculation.py`` (reference section 2.1): for every layer, every
weight array Keras returns (batch-norm gamma, beta, moving mean and moving variance included) is
counted; ``non_zero`` values times the bytes of the array's dtype is the size that counts. The limit
here is 128,000 bytes (the stricter reading of "128 KB"). KB in printed tables is 1024 bytes, as
dcase_util prints it. PyTorch's ``num_batches_tracked`` counter has no Keras counterpart and is not
an inference parameter, so it is excluded.

Batch-norm handling is an explicit choice, printed with every report:
- ``kept-float32``: BN stays float32 while weights are float16 (the Keras float16 baseline: 93,004 B);
- ``kept``: BN stored at the same precision as the weights (46,246 x 2 = 92,492 B = 90.3 KB);
- ``folded``: BN folded into the preceding convolution (the TFLite float16 baseline: 91,980 B).

Stored int8 and 1-bit model files (tinyasc/artifact.py) are counted the same way, tensor by tensor as stored:
int8 weights at 1 byte, their float32 scales and narrow integer zero points, and packed sign bits
(``name::bits``, uint8), which count in full since a zero byte holds eight weights, not pruned values.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

LIMIT_BYTES = 128_000

BYTES_PER_DTYPE = {
    torch.float64: 8,
    torch.int64: 8,
    torch.float32: 4,
    torch.int32: 4,
    torch.float16: 2,
    torch.bfloat16: 2,
    torch.int16: 2,
    torch.int8: 1,
    torch.uint8: 1,
    torch.qint8: 1,
    torch.quint8: 1,
}

PRECISIONS = {
    # name: (weight dtype, bn mode)
    "float32": (torch.float32, "kept"),
    "float16": (torch.float16, "kept-float32"),
    "float16-all": (torch.float16, "kept"),
    "float16-folded": (torch.float16, "folded"),
    "int8": (
        torch.int8,
        "folded-where-possible",
    ),  # an estimate before quantisation; see int8_estimate_tensors
}


@dataclass
class LayerRow:
    name: str
    params: int
    nonzero: int
    bytes: int
    nonzero_bytes: int
    dtypes: list[str] = field(default_factory=list)


@dataclass
class SizeReport:
    rows: list[LayerRow]
    precision: str
    bn_mode: str
    limit: int = LIMIT_BYTES
    notes: list[str] = field(default_factory=list)  # e.g. which layers a 1-bit or int8 model kept wider

    @property
    def params(self) -> int:
        return sum(r.params for r in self.rows)

    @property
    def nonzero(self) -> int:
        return sum(r.nonzero for r in self.rows)

    @property
    def bytes(self) -> int:
        return sum(r.bytes for r in self.rows)

    @property
    def nonzero_bytes(self) -> int:
        return sum(r.nonzero_bytes for r in self.rows)

    @property
    def fits(self) -> bool:
        return self.nonzero_bytes <= self.limit

    def dense(self, why: str) -> SizeReport:
        """The worst case: every value counted as non-zero (a model not yet trained, whose zeros are
        initial values rather than pruned weights)."""
        rows = [LayerRow(r.name, r.params, r.params, r.bytes, r.bytes, list(r.dtypes)) for r in self.rows]
        return SizeReport(rows, self.precision, self.bn_mode, self.limit, [*self.notes, why])

    def to_dict(self) -> dict:
        return {
            "precision": self.precision,
            "batch_norm": self.bn_mode,
            "params": self.params,
            "nonzero_params": self.nonzero,
            "bytes": self.bytes,
            "nonzero_bytes": self.nonzero_bytes,
            "kb": round(self.nonzero_bytes / 1024, 2),
            "limit_bytes": self.limit,
            "fits": self.fits,
            "layers": [asdict(r) for r in self.rows],
            "notes": list(self.notes),
        }

    def table(self) -> str:
        """The DCASE 2021 table: Name | Param | NZ Param | Size | NZ Size, then the total."""
        head = ("Name", "Param", "NZ Param", "Size", "NZ Size")
        lines = [head] + [
            (r.name, str(r.params), str(r.nonzero), byte_string(r.bytes), byte_string(r.nonzero_bytes))
            for r in self.rows
        ]
        lines.append(
            (
                "Total",
                str(self.params),
                str(self.nonzero),
                byte_string(self.bytes),
                byte_string(self.nonzero_bytes),
            )
        )
        widths = [max(len(line[i]) for line in lines) for i in range(5)]
        fmt = "| " + " | ".join(f"{{:<{w}}}" for w in widths) + " |"
        out = [fmt.format(*lines[0]), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
        out += [fmt.format(*line) for line in lines[1:]]
        verdict = "PASS" if self.fits else "FAIL"
        out.append("")
        out.append(f"precision {self.precision}; batch norm {self.bn_mode}")
        out += self.notes
        out.append(
            f"{verdict}: {self.nonzero_bytes:,} bytes of non-zero parameters "
            f"({'<=' if self.fits else '>'} limit {self.limit:,} bytes)"
        )
        return "\n".join(out)


def byte_string(n: int) -> str:
    """dcase_util get_byte_string: '%.4g KB' with 1 KB = 1024 bytes, with the byte count above 1 KB."""
    if n < 1024:
        return f"{n} bytes"
    return f"{n:,} bytes ({n / 1024:.4g} KB)"


def count_tensors(named: list[tuple[str, torch.Tensor]], precision: str, bn_mode: str) -> SizeReport:
    """Group ``(module.tensor, tensor)`` pairs by module and count each at its own dtype."""
    rows: dict[str, LayerRow] = {}
    for full, t in named:
        if full.endswith("num_batches_tracked"):
            continue
        if t.dtype not in BYTES_PER_DTYPE:
            raise ValueError(f"{full}: dtype {t.dtype} has no DCASE byte count")
        width = BYTES_PER_DTYPE[t.dtype]
        key = full.split("::", 1)[0]  # "name::scales" etc.: parts of one stored quantised tensor
        if "._packed_params" in key:  # a quantised Linear's (weight, bias)
            layer = key.split("._packed_params", 1)[0]
        else:  # top-level tensors of an int8 graph are the activations' scales and zero points
            layer = key.rsplit(".", 1)[0] if "." in key else "(activation quantisation)"
        row = rows.setdefault(layer, LayerRow(layer, 0, 0, 0, 0))
        if full.endswith("::bits"):
            # packed 1-bit weights: eight per byte, every byte counted (a zero byte is eight weights of
            # -1, not pruned values)
            row.params += 8 * t.numel()
            row.nonzero += 8 * t.numel()
            row.bytes += t.numel()
            row.nonzero_bytes += t.numel()
            dtype = "1-bit"
        else:
            nz = int(torch.count_nonzero(t.detach()).item())
            row.params += t.numel()
            row.nonzero += nz
            row.bytes += t.numel() * width
            row.nonzero_bytes += nz * width
            dtype = str(t.dtype).replace("torch.", "")
        if dtype not in row.dtypes:
            row.dtypes.append(dtype)
    return SizeReport(list(rows.values()), precision, bn_mode)


def _bn_modules(model: nn.Module) -> set[str]:
    return {n for n, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)}


def example_input(model: nn.Module, batch: int = 1) -> torch.Tensor:
    """A zero log-mel batch of the shape the model declares (``n_mels`` and ``frames`` attributes)."""
    try:
        return torch.zeros(batch, 1, model.n_mels, model.frames)
    except AttributeError:
        raise ValueError(f"{type(model).__name__}: no n_mels / frames attributes to build an input") from None


def traced_pass(model: nn.Module, x: torch.Tensor, hooks: list) -> None:
    """One eval-mode forward pass of ``x`` with ``hooks`` registered; removes them and restores the mode."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)


@torch.no_grad()
def batchnorm_pairs(model: nn.Module, x: torch.Tensor | None = None) -> dict[str, str]:
    """``{bn_name: layer_name}`` for every batch norm whose input is exactly the output of a conv/linear.

    Found by running one forward pass with hooks (so the data flow, not the registration order, decides),
    which is the condition for folding the batch norm into that layer.
    """
    x = example_input(model) if x is None else x
    produced: dict[int, tuple[str, nn.Module]] = {}
    pairs: dict[str, str] = {}
    keep: list[torch.Tensor] = []  # hold outputs so that ids are not reused during the pass
    hooks = []

    def on_layer(name):
        def hook(module, inputs, output):
            keep.append(output)
            produced[id(output)] = (name, module)

        return hook

    def on_bn(name):
        def hook(module, inputs):
            src = produced.get(id(inputs[0]))
            if src is not None and src[1].weight.shape[0] == module.num_features:
                pairs[name] = src[0]

        return hook

    for name, m in model.named_modules():
        if isinstance(m, nn.Conv1d | nn.Conv2d | nn.Linear):
            hooks.append(m.register_forward_hook(on_layer(name)))
        elif isinstance(m, nn.modules.batchnorm._BatchNorm):
            hooks.append(m.register_forward_pre_hook(on_bn(name)))
    traced_pass(model, x, hooks)
    return pairs


def fold_batchnorm(model: nn.Module, strict: bool = True, x: torch.Tensor | None = None) -> nn.Module:
    """An eval-mode copy with every batch norm folded into the conv or linear layer that feeds it.

    ``strict``: a batch norm that no layer feeds directly (e.g. SubSpectralNorm, pre-activation) is an
    error; otherwise it is kept as it is.
    """
    model = copy.deepcopy(model).eval()
    pairs = batchnorm_pairs(model, x)
    for bn_name in sorted(_bn_modules(model)):
        if bn_name not in pairs:
            if strict:
                raise ValueError(
                    f"{bn_name}: batch norm not fed directly by a conv/linear layer; cannot fold it"
                )
            continue
        bn = model.get_submodule(bn_name)
        conv = model.get_submodule(pairs[bn_name])
        scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
        shape = (-1,) + (1,) * (conv.weight.dim() - 1)
        conv.weight.data = conv.weight.detach() * scale.reshape(shape)
        bias = conv.bias.detach() if conv.bias is not None else torch.zeros_like(bn.running_mean)
        conv.bias = nn.Parameter((bias - bn.running_mean) * scale + bn.bias.detach())
        parent_name, _, attr = bn_name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, attr, nn.Identity())
    return model


def storage_tensors(model: nn.Module, precision: str) -> list[tuple[str, torch.Tensor]]:
    """The tensors a float model would ship as at ``precision`` (cast, BN kept or folded)."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; expected one of {', '.join(PRECISIONS)}")
    dtype, bn_mode = PRECISIONS[precision]
    if dtype == torch.int8:
        return int8_estimate_tensors(model)
    if bn_mode == "folded":
        model = fold_batchnorm(model)
    bns = _bn_modules(model)
    out = []
    for name, t in model.state_dict().items():
        layer = name.rsplit(".", 1)[0]
        keep32 = bn_mode == "kept-float32" and layer in bns
        out.append((name, t if keep32 or not t.is_floating_point() else t.to(dtype)))
    return out


def int8_estimate_tensors(model: nn.Module) -> list[tuple[str, torch.Tensor]]:
    """What per-channel int8 post-training quantisation would store, for planning before compression.

    Batch norms fed directly by a layer are folded into it; every conv/linear weight becomes int8 (1 B)
    with one float32 scale per output channel (symmetric: zero points are 0, free by the non-zero rule),
    a float32 bias, and a float32 scale plus a uint8 zero point for its input (``compress/int8.py``'s
    scheme; the zero point counted, though it is free where the input is never negative). Batch norms
    that cannot be folded stay float32. The exact count of a quantised run comes from its stored tensors.
    """
    folded = fold_batchnorm(model, strict=False)
    layers = {n for n, m in folded.named_modules() if isinstance(m, nn.Conv1d | nn.Conv2d | nn.Linear)}
    out = []
    for name, t in folded.state_dict().items():
        layer, _, attr = name.rpartition(".")
        if layer in layers and attr == "weight":
            out.append((name, (t != 0).to(torch.int8)))
            out.append((f"{layer}.weight_scale", torch.ones(t.shape[0])))
            out.append((f"{layer}.input_scale", torch.ones(1)))
            out.append((f"{layer}.input_zero_point", torch.ones(1, dtype=torch.uint8)))
        elif t.is_floating_point():
            out.append((name, t.float()))
        else:
            out.append((name, t))
    return out


def model_size(model: nn.Module, precision: str = "float16") -> SizeReport:
    """Size report of a float model stored at ``precision`` (see PRECISIONS)."""
    return count_tensors(storage_tensors(model, precision), precision, PRECISIONS[precision][1])


def state_size(state: dict[str, torch.Tensor], precision: str, bn_mode: str) -> SizeReport:
    """Size report of a stored state dict, every tensor at the dtype it is stored in."""
    return count_tensors(list(state.items()), precision, bn_mode)


def head_note(model: nn.Module, report: SizeReport, n_classes: int) -> str | None:
    """What the classifier head (the last conv or linear layer) costs in ``report``, per class too: the
    part of a model's size that grows with the number of classes."""
    layers = [n for n, m in model.named_modules() if isinstance(m, nn.Conv1d | nn.Conv2d | nn.Linear)]
    if not layers:
        return None
    rows = {r.name: r for r in report.rows}
    head = rows.get(layers[-1])
    if head is None:
        return None
    return (
        f"classifier head {layers[-1]}: {head.nonzero_bytes:,} bytes for {n_classes} classes "
        f"({head.nonzero_bytes / max(n_classes, 1):,.0f} per class)"
    )
