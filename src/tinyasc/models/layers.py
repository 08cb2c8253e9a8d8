"""Building blocks shared by the model zoo."""

from __future__ import annotations

import inspect

import torch
from torch import nn

from tinyasc.config import FrontendConfig
from tinyasc.models.registry import check_input, register_model

# Frontends the variants are registered with (FrontendConfig overrides; see configs/). All at 44.1 kHz.
# 256 mel bands, 2048-sample Hann window, hop 1024: all 431 frames of a 10 s clip (BC-ResNet-ASC).
FRONTEND_256 = dict(n_fft=2048, win_length=2048, hop_length=1024, window="hann", n_mels=256, trim_frames=0)
# CP-ResNet's features were 22.05 kHz, n_fft 2048, hop 512, 256 mel; the same time and frequency
# resolution at 44.1 kHz is n_fft 4096, hop 1024.
FRONTEND_CP = dict(n_fft=4096, win_length=4096, hop_length=1024, window="hann", n_mels=256, trim_frames=0)
# Families whose papers' exact features are not verified: 128 mel bands, 2048 / 1024 Hann (our choice).
FRONTEND_128 = dict(n_fft=2048, win_length=2048, hop_length=1024, window="hann", n_mels=128, trim_frames=0)


class ASCModel(nn.Module):
    """Base: a model of (B, 1, n_mels, frames) normalised log-mel that checks its input shape."""

    # Training runs in channels_last tensors: every family of the zoo trained 1.2-1.76x faster per
    # core with them than in NCHW on the project's CPU (benchmarks/train_speed.py, tuned+cl against
    # tuned), except BC-ResNet-ASC (0.85-1.05x), which sets this False.
    channels_last = True
    # Whether train.precision=auto trains it under bfloat16 autocast on a CPU with native bfloat16:
    # only where measured faster than float32 in its own memory format (benchmarks/train_speed.py,
    # tuned+cl+bf16 against tuned+cl); a family declares it. Every registered family does now: the
    # depthwise-separable ones (MobileNetV2, EfficientNet, CP-Mobile) since their strided and 5x5
    # depthwise convolutions run in float32 under bfloat16 (0.75-0.93x as fast before).
    bfloat16_training = False
    # Whether onnxruntime runs it with its NCHWc layout transforms (its default, all-optimisations
    # level) or without them (the extended level): with them the baseline, MobileNetV2 and CP-Mobile
    # ran 1.9-3.3x faster, BC-ResNet 0.89x as fast (benchmarks/infer_speed.py --levels).
    onnx_layout_transforms = True

    def __init__(self, n_mels: int, frames: int, label: str):
        super().__init__()
        self.n_mels, self.frames, self.label = n_mels, frames, label

    def check(self, x: torch.Tensor) -> None:
        check_input(x, self.n_mels, self.frames, self.label)


def eager_cpu_nchw(x) -> bool:
    """Whether ``x`` is a contiguous NCHW CPU tensor in an eager call: the case the layers' faster
    CPU paths (``MaxPool2d``, ``Conv1x1``, BC-ResNet's mean over frequency, 3x1 convolutions and
    fused stem) were written and measured for. An FX proxy (``compress/memory.py`` tracing the model) and
    graph capture for export, compile or TorchScript tracing get the plain operators, which those
    graphs know."""
    return (
        isinstance(x, torch.Tensor)
        and x.dim() == 4
        and x.device.type == "cpu"
        and x.is_contiguous()
        and not (torch.jit.is_tracing() or torch.compiler.is_compiling() or torch.compiler.is_exporting())
    )


class _MaxPool2x2(torch.autograd.Function):
    """2x2 max pooling, stride 2, of an NCHW tensor as two pairwise maxima (columns, then rows).

    ATen's NCHW max-pool forward is a scalar loop over each window: on the project's CPU it took
    92 ms for BC-ResNet c40's first (16, 40, 128, 216) float32 map, where one read of the same data
    takes 6 ms, this forward 22 ms and the channels_last kernel 13 ms (benchmarks/pool_speed.py). The
    backward keeps two boolean masks instead of int64 indices; with it the two forms are close.
    The values equal ``F.max_pool2d(x, 2)`` and so does the gradient, ties included: the first
    maximum in row-major order of its window takes it (left before right, then the top row before the
    bottom one, as ATen's scan); NaN inputs give NaN outputs, but their gradient may go elsewhere.
    """

    @staticmethod
    def pairs(x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``(left, right, top, bottom)``: the columns of each window, then the rows of their maxima."""
        f, t = x.shape[-2:]
        even = x[:, :, : f // 2 * 2, : t // 2 * 2]  # MaxPool2d(2) drops an odd last row or column
        left, right = even[..., 0::2], even[..., 1::2]
        cols = torch.maximum(left, right)
        return left, right, cols[:, :, 0::2], cols[:, :, 1::2]

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        left, right, top, bottom = _MaxPool2x2.pairs(x)
        ctx.save_for_backward(torch.ge(left, right), torch.ge(top, bottom))
        ctx.shape = tuple(x.shape)
        return torch.maximum(top, bottom)

    @staticmethod
    def backward(ctx, g: torch.Tensor) -> torch.Tensor:
        from_left, from_top = ctx.saved_tensors
        b, c, f, t = ctx.shape
        f2, t2 = f // 2 * 2, t // 2 * 2
        g_top = g * from_top
        g_cols = g.new_empty(from_left.shape)
        g_cols[:, :, 0::2] = g_top
        g_cols[:, :, 1::2] = g - g_top
        g_left = g_cols * from_left
        gx = (g.new_empty if (f2, t2) == (f, t) else g.new_zeros)((b, c, f, t))
        gx[:, :, :f2, 0:t2:2] = g_left
        gx[:, :, :f2, 1:t2:2] = g_cols - g_left
        return gx


class MaxPool2d(nn.MaxPool2d):
    """``nn.MaxPool2d`` that runs 2x2 / stride-2 pooling of NCHW CPU tensors through
    ``_MaxPool2x2`` (the same values and gradients; about 4x faster without the backward, about as
    fast with it: ``benchmarks/pool_speed.py``). Every other case, channels_last
    tensors (whose ATen kernel is fast), CUDA, and graph capture for export, compile or int8
    tracing, takes ``nn.MaxPool2d``'s own path."""

    def _fast(self, x) -> bool:
        return (
            eager_cpu_nchw(x)
            and self.kernel_size in (2, (2, 2))
            and self.stride in (2, (2, 2))
            and self.padding in (0, (0, 0))
            and self.dilation in (1, (1, 1))
            and not (self.ceil_mode or self.return_indices)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self._fast(x):
            return super().forward(x)
        if torch.is_grad_enabled() and x.requires_grad:
            return _MaxPool2x2.apply(x)
        _, _, top, bottom = _MaxPool2x2.pairs(x)  # inference: the values without the masks
        return torch.maximum(top, bottom)


class _PointwiseConv(torch.autograd.Function):
    """A 1x1 convolution of an NCHW tensor as batched matrix products: ``W (out, in) @ x[b] (in, H*W)``
    for the output, ``W^T @ g[b]`` for the input's gradient and ``sum_b g[b] @ x[b]^T`` for the
    weight's, every operand in its NCHW memory as it is (no bias: the caller adds it).

    oneDNN runs an NCHW bfloat16 1x1 convolution in its blocked layout and copies the output, and the
    input's gradient, back to NCHW: BC-ResNet c40's first transition (80 to 40 channels on the
    (16, 80, 128, 216) map) took 318 ms forward and backward in bfloat16, 103 ms as these products;
    the smaller ones 1.6-2.4x faster (interleaved, one thread, on the project's CPU); c40's training
    step 1.05-1.10x in three runs (benchmarks/train_speed.py, ``+plainconv``)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        return _pointwise(x, weight)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g: torch.Tensor):
        x, weight = ctx.saved_tensors
        b, c_in, h, w = x.shape
        c_out = weight.shape[0]
        g3 = g.contiguous().view(b, c_out, h * w)
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.bmm(weight.view(c_out, c_in).t().expand(b, c_in, c_out), g3).view(b, c_in, h, w)
        if ctx.needs_input_grad[1]:
            grad_w = torch.bmm(g3, x.view(b, c_in, h * w).transpose(1, 2)).sum(0).view_as(weight)
        return grad_x, grad_w


def _pointwise(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    b, c_in, h, w = x.shape
    c_out = weight.shape[0]
    out = torch.bmm(weight.view(c_out, c_in).expand(b, c_out, c_in), x.view(b, c_in, h * w))
    return out.view(b, c_out, h, w)


class Conv1x1(nn.Conv2d):
    """A 1x1, stride-1, ungrouped ``nn.Conv2d`` (same parameters, state and results) whose forward on a
    contiguous NCHW CPU tensor is ``_PointwiseConv``'s matrix products; under autocast they run in
    autocast's dtype, as ``conv2d`` would. CUDA, channels_last tensors and graph capture for export,
    compile or int8 tracing take ``nn.Conv2d``'s own path; int8 quantisation swaps it for a plain
    ``nn.Conv2d`` first (``for_quantization``), and ``same_as_conv2d`` tells compression (which knows
    no architecture) that it may treat it as one."""

    same_as_conv2d = True

    def __init__(self, c_in: int, c_out: int, bias: bool = False):
        super().__init__(c_in, c_out, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not eager_cpu_nchw(x):
            return super().forward(x)
        weight = self.weight
        if torch.is_autocast_enabled("cpu"):  # conv2d is on autocast's lower-precision list
            dtype = torch.get_autocast_dtype("cpu")
            x, weight = x.to(dtype), weight.to(dtype)
        elif x.dtype != weight.dtype:
            return super().forward(x)  # conv2d's own error for mismatched dtypes
        with torch.autocast("cpu", enabled=False):
            if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad):
                out = _PointwiseConv.apply(x, weight)
            else:
                out = _pointwise(x, weight)
            if self.bias is not None:
                out = out + self.bias.to(out.dtype).view(1, -1, 1, 1)
        return out

    def for_quantization(self) -> nn.Conv2d:
        """A plain ``nn.Conv2d`` with the same parameters, which graph quantisation knows."""
        return plain_conv2d(self)


def plain_conv2d(conv: nn.Conv2d, weight: torch.Tensor | None = None) -> nn.Conv2d:
    """A plain ``nn.Conv2d`` with ``conv``'s settings, bias and training mode and ``weight`` (by default
    its own): what a convolution subclass with its own forward returns from ``for_quantization()``."""
    plain = nn.Conv2d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        conv.stride,
        conv.padding,
        conv.dilation,
        conv.groups,
        conv.bias is not None,
        conv.padding_mode,
    )
    with torch.no_grad():
        plain.weight.copy_(conv.weight if weight is None else weight)
        if conv.bias is not None:
            plain.bias.copy_(conv.bias)
    return plain.train(conv.training)


def conv_bn(
    c_in: int, c_out: int, kernel=3, stride=1, groups: int = 1, act: type | None = nn.ReLU
) -> nn.Sequential:
    """Conv2d (no bias, 'same' padding for odd kernels) + BatchNorm2d [+ activation]."""
    k = (kernel, kernel) if isinstance(kernel, int) else tuple(kernel)
    layers: list[nn.Module] = [
        nn.Conv2d(c_in, c_out, k, stride=stride, padding=(k[0] // 2, k[1] // 2), groups=groups, bias=False),
        nn.BatchNorm2d(c_out),
    ]
    if act is not None:
        layers.append(act())
    return nn.Sequential(*layers)


def init_weights(model: nn.Module) -> None:
    """He (fan-out) initialisation for convolutions, BN at 1 / 0, small normal for linear layers."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)


def _frames(frontend: dict) -> int:
    """Frames per 10 s clip of a variant's frontend (431 for hop 1024, all frames kept)."""
    return FrontendConfig(**frontend).n_frames


WIDTH_KEYS = ("width", "widths", "stem", "base", "last", "filters", "dense", "setting")


def scale_widths(family, preset: dict, s: float, multiple: int = 4) -> dict:
    """``preset`` with every width of ``family`` (its ``WIDTH_KEYS`` arguments, from the preset or the
    constructor's defaults; the channels of a MobileNet ``setting``) times ``s``, rounded to a multiple
    of ``multiple`` (at least ``multiple``): groups and four-branch modules need such widths."""
    defaults = {
        k: p.default
        for k, p in inspect.signature(family.__init__).parameters.items()
        if k in WIDTH_KEYS and p.default is not inspect.Parameter.empty
    }
    values = {**defaults, **{k: v for k, v in preset.items() if k in WIDTH_KEYS}}

    def sc(v: int) -> int:
        return max(multiple, int(round(v * s / multiple)) * multiple)

    out = dict(preset)
    for k, v in values.items():
        if k == "setting":  # MobileNet stages (t, channels, repeats, stride)
            out[k] = tuple((t, sc(c), n, st) for t, c, n, st in v)
        elif isinstance(v, tuple | list):
            out[k] = tuple(sc(x) for x in v)
        else:
            out[k] = sc(v)
    return out


def register_variants(family, variants: dict, frontend: dict, description: str) -> None:
    """Register ``{name: (params, ships_as, role)}`` builders of ``family(n_classes, **params)``."""
    for name, (params, ships_as, role) in variants.items():

        def builder(n_classes: int = 10, _p=params, **overrides) -> nn.Module:
            kw = {"n_mels": frontend["n_mels"], "frames": _frames(frontend), **_p, **overrides}
            return family(n_classes=n_classes, **kw)

        register_model(
            name,
            n_mels=frontend["n_mels"],
            frames=_frames(frontend),
            description=f"{description}, {role}",
            ships_as=ships_as,
            frontend=frontend,
            family=family.__name__,
            role=role,
            scale=lambda s, _p=params: scale_widths(family, _p, s),
        )(builder)
