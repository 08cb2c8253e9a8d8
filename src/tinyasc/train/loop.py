"""One epoch of training and a loss/accuracy pass, plain PyTorch."""

from __future__ import annotations

import contextlib

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode


def _pair(v) -> tuple:
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


class DepthwiseInFloat32(TorchFunctionMode):
    """Under bfloat16 autocast on a CPU, runs the depthwise convolutions whose bfloat16 gradients
    oneDNN computes slowly (a stride, or a kernel above 3x3) in float32, input cast up and output cast
    back to bfloat16, the rest of the network staying in bfloat16.

    Measured with PyTorch 2.13 on a Xeon with AMX, forward and backward of one batch-16 convolution
    (benchmarks/depthwise_speed.py): 3x3 stride-2 depthwise 43 ms in bfloat16 against 10 ms in float32
    and 21 ms in float32 between the casts; 5x5 stride-1 254 / 67 / 81 ms; a 3x3 stride-1 one is about
    as fast in bfloat16 (21 / 18 / 33 ms) and stays there. MobileNetV2, EfficientNet and CP-Mobile then
    train faster in bfloat16 than in float32 (benchmarks/train_speed.py). Only the training forward
    (gradients enabled) is touched; evaluation keeps autocast's own arithmetic."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.conv2d and torch.is_grad_enabled() and _slow_in_bfloat16(*args, **kwargs):
            return _conv2d_float32(*args, **kwargs)
        return func(*args, **kwargs)


def _slow_in_bfloat16(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1) -> bool:
    return input.dim() == 4 and _slow_depthwise(
        groups, input.shape[1], weight.shape[0], stride, weight.shape[2:]
    )


def _slow_depthwise(groups: int, c_in: int, c_out: int, stride, kernel) -> bool:
    """A depthwise convolution (one filter per channel) with a stride or a kernel above 3x3."""
    depthwise = groups > 1 and groups == c_in == c_out
    return depthwise and (_pair(stride) != (1, 1) or kernel[0] * kernel[1] > 9)


def float32_depthwise_layers(model: nn.Module) -> int:
    """How many of ``model``'s convolutions ``DepthwiseInFloat32`` runs in float32 (for the run log)."""
    return sum(
        isinstance(m, nn.Conv2d)
        and _slow_depthwise(m.groups, m.in_channels, m.out_channels, m.stride, m.kernel_size)
        for m in model.modules()
    )


def _conv2d_float32(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    with torch.autocast("cpu", enabled=False):
        bias = None if bias is None else bias.float()
        out = torch.conv2d(input.float(), weight.float(), bias, stride, padding, dilation, groups)
    return out.to(torch.bfloat16)


@contextlib.contextmanager
def autocast(device_type: str, dtype: torch.dtype | None, depthwise_float32: bool = True):
    """The training forward pass's arithmetic: autocast at ``dtype`` (None: plain float32); bfloat16
    on a CPU with ``DepthwiseInFloat32`` (``depthwise_float32=False``: without, for benchmarks)."""
    with torch.autocast(device_type, dtype=dtype or torch.float32, enabled=dtype is not None):
        if device_type == "cpu" and dtype == torch.bfloat16 and depthwise_float32:
            with DepthwiseInFloat32():
                yield
        else:
            yield


def train_one_epoch(
    model: nn.Module,
    norm: nn.Module,
    optimizer,
    batch_iter,
    device,
    recipe: nn.Module,
    bar=None,
    extras: dict[str, np.ndarray] | None = None,
    hooks=(),
    amp_dtype: torch.dtype | None = None,
    scaler=None,
    memory_format: torch.memory_format = torch.contiguous_format,
) -> dict:
    """One pass; ``recipe(model, x, y, **extras) -> (loss, logits)`` (train/recipe.py) applies the
    augmentation and the loss, plain cross-entropy when none is configured. ``extras`` (e.g. teacher
    logits) are per-clip arrays aligned with the rows ``batch_iter`` walks; the recipe gets their rows of
    each batch as tensors. Each of ``hooks`` (train/hooks.py) acts after every optimiser step.
    ``amp_dtype``: the forward pass and loss under autocast at that dtype (``train.precision``);
    ``scaler``: a ``torch.amp.GradScaler`` for float16; ``memory_format``: the layout of the batches
    (channels_last for the families that declare it, as their weights)."""
    model.train()
    recipe.train()
    total, correct, loss_sum = 0, 0, 0.0
    for x, y, pos in batch_iter:
        # non-blocking: from the pinned batches of the reader processes (data/loader.py) on CUDA
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        kw = {k: torch.from_numpy(v[pos]).to(device) for k, v in (extras or {}).items()}
        if recipe.logmel is not None:  # a waveform batch (B, 1, samples): augment, then log-mel
            with torch.no_grad():
                x = recipe.features(x[:, 0], kw.get("is_reference"))
        with autocast(device.type, amp_dtype):
            loss, logits = recipe(model, norm(x).contiguous(memory_format=memory_format), y, **kw)
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:  # float16: scale the loss so that small gradients do not underflow
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        for hook in hooks:
            hook.after_step(model)
        n = len(y)
        total += n
        loss_sum += loss.float().item() * n
        correct += (logits.argmax(1) == y).sum().item()
        if bar is not None:
            bar.update(n)
            bar.set_postfix(loss=f"{loss_sum / total:.3f}", acc=f"{correct / total:.3f}")
    return {"loss": loss_sum / max(total, 1), "accuracy": correct / max(total, 1), "n": total}


@torch.no_grad()
def predict_logits(model: nn.Module, norm: nn.Module, batch_iter, device) -> tuple[np.ndarray, np.ndarray]:
    """Logits (N, C) and labels (N,) in the order of ``batch_iter``; the model is left in eval mode."""
    model.eval()
    outs, labels = [], []
    for x, y, _ in batch_iter:
        outs.append(model(norm(x.to(device))).float().cpu())
        labels.append(y)
    if not outs:  # no clips (training without a validation part, or a rank's empty shard)
        return np.zeros((0, 0), dtype=np.float32), np.zeros(0, dtype=np.int64)
    return torch.cat(outs).numpy(), torch.cat(labels).numpy()


def loss_and_accuracy(logits: np.ndarray, labels: np.ndarray) -> dict:
    """Mean cross-entropy and accuracy (0 and 0 for no clips, e.g. a rank's empty shard)."""
    if len(labels) == 0:
        return {"loss": 0.0, "accuracy": 0.0}
    t = torch.from_numpy(logits)
    y = torch.from_numpy(labels)
    return {
        "loss": float(F.cross_entropy(t, y).item()),
        "accuracy": float((t.argmax(1) == y).float().mean().item()),
    }
