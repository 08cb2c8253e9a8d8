"""Post-training float16, as the official baseline (reference section 1.4).

The Keras baseline casts every weight to float16 after training while batch norm stays float32;
``quantize_float16`` stores exactly that. Evaluation "as stored" loads the float16 values back into a
float32 model (the weights are the float16 numbers; activations run in float32, which every CPU
supports), the same simulation as SP4ASC's ``net.half().float()``.
"""

from __future__ import annotations

import torch
from torch import nn

from tinyasc.compress.size import storage_tensors


def quantize_float16(model: nn.Module) -> dict[str, torch.Tensor]:
    """State dict with conv/linear tensors in float16 and batch norm in float32 (the Keras choice)."""
    return dict(storage_tensors(model, "float16"))


def load_as_stored(model: nn.Module, state: dict[str, torch.Tensor]) -> nn.Module:
    """Load a (possibly float16) stored state into a float32 model; returns the model."""
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    return model
