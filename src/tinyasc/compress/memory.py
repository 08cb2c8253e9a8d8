"""Peak activation memory of one inference: what a device must hold beside the parameters.

The model is traced into its graph of operations (``torch.fx``; modules that declare
``quantization_leaf`` stay whole), the shapes of one clip's pass are recorded (batch 1), and the
operations are walked in order: an operation's output is allocated while its inputs are still held,
and a tensor is freed after its last use. The peak of the sum of the live tensors is the figure, with
the operation where it occurs. Operations that return a view of their input (reshape, flatten, view,
squeeze, dropout and identity at inference) allocate nothing and keep their input alive. The input
log-mel is counted; parameters and the frontend (STFT) are not. Values are counted at
``bytes_per_value`` (4 for float32 activations, 1 for an int8 pipeline).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from tinyasc.compress.size import example_input

_VIEW_METHODS = {"view", "reshape", "flatten", "squeeze", "unsqueeze", "transpose", "permute", "expand"}
_VIEW_FUNCTIONS = {torch.flatten, torch.reshape, torch.squeeze, torch.unsqueeze, torch.transpose}
_VIEW_MODULES = (nn.Dropout, nn.Dropout2d, nn.Identity, nn.Flatten)


@dataclass
class MemoryReport:
    peak_bytes: int
    peak_at: str  # the operation at the peak
    input_bytes: int
    bytes_per_value: int

    def to_dict(self) -> dict:
        return {
            "peak_activation_bytes": self.peak_bytes,
            "peak_at": self.peak_at,
            "input_bytes": self.input_bytes,
            "bytes_per_value": self.bytes_per_value,
        }


class _Tracer(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return getattr(type(m), "quantization_leaf", False) or super().is_leaf_module(m, qualname)


def _numel(node: fx.Node) -> int:
    meta = node.meta.get("tensor_meta")
    if meta is None or not hasattr(meta, "shape"):
        return 0  # not a tensor (a shape, a tuple): nothing allocated here
    n = 1
    for d in meta.shape:
        n *= int(d)
    return n


def _is_view(node: fx.Node, modules: dict) -> bool:
    if node.op == "call_method":
        return node.target in _VIEW_METHODS
    if node.op == "call_function":
        return node.target in _VIEW_FUNCTIONS
    if node.op == "call_module":
        return isinstance(modules[node.target], _VIEW_MODULES)
    return False


@torch.no_grad()
def activation_memory(
    model: nn.Module, x: torch.Tensor | None = None, bytes_per_value: int = 4
) -> MemoryReport:
    """Peak activation bytes of one clip (batch 1) through ``model`` in eval mode."""
    model = model.eval()
    x = example_input(model) if x is None else x
    tracer = _Tracer()
    graph = tracer.trace(model)
    gm = fx.GraphModule(tracer.root, graph)
    ShapeProp(gm).propagate(x)
    modules = dict(gm.named_modules())
    nodes = list(gm.graph.nodes)
    owner: dict[fx.Node, fx.Node] = {}  # a view -> the tensor that holds its memory
    for n in nodes:
        if _is_view(n, modules) and n.all_input_nodes:
            first = n.all_input_nodes[0]
            owner[n] = owner.get(first, first)
    last_use: dict[fx.Node, int] = {}
    for i, n in enumerate(nodes):
        for inp in n.all_input_nodes:
            root = owner.get(inp, inp)
            last_use[root] = max(last_use.get(root, -1), i)
    live: dict[fx.Node, int] = {}
    peak, peak_at, input_bytes = 0, "", 0
    for i, n in enumerate(nodes):
        if n.op == "output":
            break
        if n not in owner and n.op in ("placeholder", "call_module", "call_function", "call_method"):
            live[n] = _numel(n) * bytes_per_value
            if n.op == "placeholder":
                input_bytes = live[n]
        total = sum(live.values())
        if total > peak:
            peak, peak_at = total, n.name
        for root in [r for r in live if last_use.get(r, -1) <= i]:
            del live[root]  # freed after its last use
    return MemoryReport(peak, peak_at, input_bytes, bytes_per_value)
