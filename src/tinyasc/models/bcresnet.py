"""BC-ResNet-ASC (Kim_QTI, DCASE 2021 Task 1A rank 1): broadcasted residual learning with ResNorm.

Follows reference ``top_systems.md`` sections 2.2-2.4 (Qualcomm's BC-ResNet block definitions; the ASC
layout of the public re-implementation in yqcai888/easy_dcase_task1), written anew here:

- head: 5x5 convolution, stride 2, no bias, no batch norm, to 2c channels;
- stages: [ResNorm] 2 blocks at c, ResNorm, MaxPool 2x2, 2 blocks at 1.5c, ResNorm, MaxPool 2x2,
  2 blocks at 2c, ResNorm, 3 blocks at 2.5c, ResNorm; no dilation (the restricted receptive field that
  distinguishes the ASC model from the keyword-spotting one);
- block: a transition block starts with 1x1 conv-BN-ReLU (in != out); f2 = frequency-wise depthwise
  3x1 conv + SubSpectralNorm (no activation); frequency average; f1 = time-wise depthwise 1x3 conv + BN +
  SiLU + 1x1 conv + Dropout2d; output ReLU(f1 broadcast over frequency + f2 [+ identity]);
- classifier: 1x1 conv (with bias) to the classes, then the mean over frequency and time.

ResNorm (Kim et al. 2021): ``lambda * x + IFN(x)`` with IFN the instance frequency-wise normalisation
(mean and variance over channels and time per sample and frequency bin), lambda 0.1, eps 1e-5, no
parameters. It is a switch (``resnorm=False`` keeps the layout without it): Qualcomm filed a patent on
it (US 2022/0405547), so an open-source user may want it off.

Open details, chosen here and configurable: SubSpectralNorm with 4 sub-bands (needs the frequency
axis divisible by 4 in every stage, hence 256 mel bands); dropout 0.1; 1x1 convolutions in f1 without
bias. With c = 80 and 4 sub-bands the model has 314,650 parameters, the "315k" of QTI's report.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tinyasc.models.layers import (
    FRONTEND_256,
    ASCModel,
    Conv1x1,
    MaxPool2d,
    eager_cpu_nchw,
    plain_conv2d,
    register_variants,
)


class SubSpectralNorm(nn.Module):
    """Batch norm per frequency sub-band: (B, C, F, T) -> (B, C*S, F/S, T) -> BN(C*S) -> back."""

    # int8 keeps it float32: its batch norm sees a reshaped map, no conv's output to fold into.
    quantization_leaf = True

    def __init__(self, channels: int, sub_bands: int, eps: float = 1e-5):
        super().__init__()
        self.sub_bands = sub_bands
        self.bn = nn.BatchNorm2d(channels * sub_bands, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, f, t = x.shape
        if f % self.sub_bands:
            raise ValueError(
                f"SubSpectralNorm: {f} frequency bins do not split into {self.sub_bands} sub-bands"
            )
        return self.bn(x.reshape(b, c * self.sub_bands, f // self.sub_bands, t)).reshape(b, c, f, t)


class ResNorm(nn.Module):
    """lambda * x + instance frequency-wise normalisation of x (statistics over channels and time)."""

    quantization_leaf = True  # statistics of each clip's map: int8 keeps it float32

    def __init__(self, lam: float = 0.1, eps: float = 1e-5):
        super().__init__()
        self.lam, self.eps = lam, eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.compiler.is_exporting():
            return self.by_reductions(x)
        return _ResNormFunction.apply(x, self.lam, self.eps)

    def by_reductions(self, x: torch.Tensor) -> torch.Tensor:
        """The same function without transposes, for exported graphs: mean and mean square reduced over
        time, then over channels, and ``x * (lambda + rstd) - mean * rstd``. onnxruntime has no layer
        norm over non-trailing axes, so the layer-norm form exports as two transposed copies of the map
        around its LayerNormalization: BC-ResNet c20's model ran 1.2x faster in onnxruntime in this form
        (benchmarks/infer_speed.py). The statistics are float32 even in a float16 export, where the
        squares could overflow; a variance below zero from rounding is taken as zero."""
        xf = x.float()
        mean = xf.mean(dim=3, keepdim=True).mean(dim=1, keepdim=True)
        square = (xf * xf).mean(dim=3, keepdim=True).mean(dim=1, keepdim=True)
        rstd = torch.rsqrt((square - mean * mean).clamp_min(0) + self.eps)
        return (xf * (rstd + self.lam) - mean * rstd).to(x.dtype)


class _ResNormFunction(torch.autograd.Function):
    """ResNorm's forward and backward around ATen's fused layer norm, with the output and the input's
    gradient written contiguous in the input's (B, C, F, T) layout.

    IFN is a layer norm over (channels, time) of the (B, F, C, T) view; ATen's layer norm needs that
    view contiguous, so the map is copied into it once each way. Left to autograd (layer norm of a
    transposed view, then ``ifn + lambda * x``), the output came out transposed, so the 2x2 pooling
    after it left its fast path, and the gradients of the two branches were summed across layouts and
    copied again on their way back. c40's bfloat16 training step ran 1.02-1.08x faster with this
    function than with that form in three runs (benchmarks/train_speed.py, ``+oldresnorm``; 1.07-1.10x
    in scratch comparisons). Autocast is off inside, whatever its lists say for these kernels: the
    layer norm runs in the input's own dtype (its statistics in float32 in ATen's kernel) and a
    bfloat16 map stays bfloat16, as it did under autocast before."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, lam: float, eps: float) -> torch.Tensor:
        shape = (x.shape[1], x.shape[3])
        with torch.autocast(x.device.type, enabled=False):
            xt = x.transpose(1, 2).contiguous()  # (B, F, C, T): each IFN group is contiguous
            ifn_t, mean, rstd = torch.native_layer_norm(xt, shape, None, None, eps)
            out = torch.empty_like(x, memory_format=torch.contiguous_format)
            torch.add(ifn_t.transpose(1, 2), x, alpha=lam, out=out)  # ifn + lambda * x, one pass
        ctx.save_for_backward(xt, mean, rstd)
        ctx.lam, ctx.shape = lam, shape
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor):
        xt, mean, rstd = ctx.saved_tensors
        with torch.autocast(grad.device.type, enabled=False):
            grad_t = grad.transpose(1, 2).contiguous()
            d_ifn_t = torch.ops.aten.native_layer_norm_backward(
                grad_t, xt, ctx.shape, mean, rstd, None, None, [True, False, False]
            )[0]
            d_x = torch.empty_like(grad, memory_format=torch.contiguous_format)
            torch.add(d_ifn_t.transpose(1, 2), grad, alpha=ctx.lam, out=d_x)
        return d_x, None, None


def frequency_mean(x: torch.Tensor) -> torch.Tensor:
    """``x.mean(dim=2, keepdim=True)`` of a (B, C, F, T) CPU tensor as a matrix product, ``ones(1, F) @
    x`` over the B * C (F, T) matrices, scaled by 1 / F (exact for the powers of two of the registered
    variants). ATen's mean of a bfloat16 map first copies the whole map to float32; the product reads
    it once and accumulates in float32: 6 against 18 ms for c40's (16, 40, 128, 216) bfloat16 map,
    12 against 22 ms with the backward; c40's training step 1.00-1.05x in three runs
    (benchmarks/train_speed.py ``+oldmean``; 1.04x in a scratch comparison). Graph capture for export,
    compile or int8 tracing, CUDA and other layouts keep ``mean``."""
    if not eager_cpu_nchw(x):
        return x.mean(dim=2, keepdim=True)
    return torch.matmul(x.new_ones(1, x.shape[2]), x) * (1.0 / x.shape[2])


def fused_stem(x: torch.Tensor, head: nn.Conv2d, norm: ResNorm | None, pointwise: nn.Conv2d) -> torch.Tensor:
    """``pointwise(norm(head(x)))``: the head convolution, the ResNorm after it (None: none) and the
    first transition block's 1x1 convolution, computed without the head's 2c-channel map.

    The head is linear in its input patches, ``h = W p`` (W: 2c x K, p: the K = 25 values of a 5x5
    patch), so ResNorm's statistics of each sample and frequency bin over channels and time follow
    from the patches: with ``m = W mean_t(p)`` (each channel's mean over time) and ``d = p -
    mean_t(p)``, the mean is ``mean_c(m)`` and the variance ``var_c(m) + tr(W^T W sum_t d d^T) / (2c T)``.
    ResNorm is then ``h * (lambda + rstd) - mean * rstd``, an affine map per sample and bin, and the
    1x1 convolution ``V`` commutes with it: ``V h * (lambda + rstd) - mean * rstd * V 1``, where
    ``V h`` is one convolution of the input with the composed c x K kernel ``V W``. The same
    parameters, the same function (to rounding: within 1e-12 in float64, at least as close to it as
    the layered form in float32 and bfloat16, tested) and the same gradients through autograd; c40's
    35 million values per batch of 16 of the 80-channel map, its ResNorm (the transposed copies, the
    layer norm and the residual sum, forward and backward) and the 80-to-40 matrix products are not
    computed: c40's bfloat16 training step 1.14-1.19x faster in three runs
    (benchmarks/train_speed.py, ``+unfusedstem``)."""
    w = head.weight.reshape(head.out_channels, -1)  # (2c, K)
    v = pointwise.weight.reshape(pointwise.out_channels, head.out_channels)  # (c, 2c)
    with torch.autocast(x.device.type, enabled=False):
        composed = (v @ w).view(-1, *head.weight.shape[1:])
    out = F.conv2d(x, composed, None, head.stride, head.padding, head.dilation)  # autocast's dtype
    if norm is None:
        return out
    b, _, f, t = out.shape
    with torch.autocast(x.device.type, enabled=False):  # the statistics in float32, as the layer norm's
        patches = F.unfold(x, head.kernel_size, head.dilation, head.padding, head.stride)  # (B, K, f*t)
        p = patches.view(b, -1, f, t).transpose(1, 2)  # (B, f, K, t)
        p_mean = p.mean(3)  # (B, f, K)
        d = p - p_mean[..., None]  # centred: the variance is a sum of two non-negative parts
        channel_means = p_mean @ w.t()  # (B, f, 2c), not a difference of large mean squares
        mean = channel_means.mean(2)
        within = torch.einsum("kl,bfkl->bf", w.t() @ w, d @ d.transpose(2, 3)) / (w.shape[0] * t)
        var = channel_means.var(2, correction=0) + within
        rstd = torch.rsqrt(var + norm.eps)
        scale = (norm.lam + rstd)[:, None, :, None]
        shift = (-mean * rstd)[:, None, :, None] * v.sum(1)[None, :, None, None]
    return out * scale.to(out.dtype) + shift.to(out.dtype)


class FrequencyConv(nn.Conv2d):
    """BC-ResNet's frequency-wise depthwise 3x1 convolution (``nn.Conv2d(c, c, (3, 1), padding=(1, 0),
    groups=c, bias=False)``: the same parameters, state and results) whose training forward under
    bfloat16 autocast on an eager CPU NCHW tensor is ``_BandedFrequencyConv``: per channel, the
    (F, T) map times the F x F banded matrix of its three weights, on AMX's bfloat16 matrix units.
    The products do about F / 3 times the arithmetic of the convolution and still take less time
    than oneDNN's bfloat16 depthwise kernel: c40's (16, 40, 128, 216) map 1.4x faster forward and
    backward in a scratch comparison, c40's training step 1.04-1.06x in two runs
    (benchmarks/train_speed.py, ``+plaindw``) on an Intel host with AMX; on an AMD Zen 5 host
    without AMX (AVX512-BF16) 1.01x for c40 and 1.05x for c20 (six rounds, rotated). Float32,
    evaluation, CUDA, other layouts and graph capture take ``nn.Conv2d``'s own path (in float32 the
    products are no faster: 120 against 115 ms on that map, scratch); int8 swaps it for a plain
    ``nn.Conv2d`` (``for_quantization``), and 1-bit compression treats it as one."""

    same_as_conv2d = True

    def __init__(self, channels: int):
        super().__init__(channels, channels, (3, 1), padding=(1, 0), groups=channels, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (
            self.training
            and torch.is_grad_enabled()
            and torch.is_autocast_enabled("cpu")
            and torch.get_autocast_dtype("cpu") == torch.bfloat16
            and eager_cpu_nchw(x)
        ):
            return super().forward(x)
        with torch.autocast("cpu", enabled=False):
            return _BandedFrequencyConv.apply(x.to(torch.bfloat16), self.weight.to(torch.bfloat16))

    def for_quantization(self) -> nn.Conv2d:
        """A plain ``nn.Conv2d`` with the same parameters, which graph quantisation knows."""
        return plain_conv2d(self)


class _BandedFrequencyConv(torch.autograd.Function):
    """``out[b, c] = A_c @ x[b, c]`` with ``A_c[f, f + k - 1] = w[c, k]`` (a cross-correlation with one
    bin of zero padding each side); the input's gradient ``A_c^T @ g`` and the weight's the three
    diagonals of ``sum_b g[b, c] @ x[b, c]^T``, summed in float32. One sample at a time, so the
    products' operands and the (C, F, F) gradient matrices stay small."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        x = x.contiguous()
        band = _band(weight, x.shape[2])
        out = torch.empty_like(x)
        for i in range(x.shape[0]):
            torch.bmm(band, x[i], out=out[i])
        ctx.save_for_backward(x, band)
        ctx.weight_dtype = weight.dtype
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g: torch.Tensor):
        x, band = ctx.saved_tensors
        g = g.contiguous()
        grad_x = torch.empty_like(g) if ctx.needs_input_grad[0] else None
        grad_w = g.new_zeros(3, x.shape[1], dtype=torch.float32) if ctx.needs_input_grad[1] else None
        for i in range(x.shape[0]):
            if grad_x is not None:
                torch.bmm(band.transpose(1, 2), g[i], out=grad_x[i])
            if grad_w is not None:
                products = torch.bmm(g[i], x[i].transpose(1, 2))  # (C, F, F): sum over time of g x^T
                for k in range(3):
                    grad_w[k] += products.diagonal(k - 1, 1, 2).float().sum(1)
        if grad_w is not None:
            grad_w = grad_w.t().reshape(-1, 1, 3, 1).to(ctx.weight_dtype)
        return grad_x, grad_w


def _band(weight: torch.Tensor, bins: int) -> torch.Tensor:
    """The (C, F, F) banded matrices of a (C, 1, 3, 1) depthwise frequency kernel."""
    w = weight.reshape(-1, 3)
    band = w.new_zeros(w.shape[0], bins, bins)
    for k in range(3):
        band.diagonal(k - 1, 1, 2).copy_(w[:, k : k + 1].expand(-1, bins - abs(k - 1)))
    return band


class BCResBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, sub_bands: int = 4, dropout: float = 0.1):
        super().__init__()
        self.transition = c_in != c_out
        self.pre = (
            nn.Sequential(Conv1x1(c_in, c_out), nn.BatchNorm2d(c_out), nn.ReLU())
            if self.transition
            else nn.Identity()
        )
        self.f2 = nn.Sequential(
            FrequencyConv(c_out),
            SubSpectralNorm(c_out, sub_bands) if sub_bands > 1 else nn.BatchNorm2d(c_out),
        )
        self.f1 = nn.Sequential(
            nn.Conv2d(c_out, c_out, (1, 3), padding=(0, 1), groups=c_out, bias=False),
            nn.BatchNorm2d(c_out),
            nn.SiLU(),
            Conv1x1(c_out, c_out),
            nn.Dropout2d(dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.after_pre(self.pre(x))

    def after_pointwise(self, z: torch.Tensor) -> torch.Tensor:
        """The transition block from the output of its 1x1 convolution on (``fused_stem``)."""
        return self.after_pre(self.pre[2](self.pre[1](z)))

    def after_pre(self, x: torch.Tensor) -> torch.Tensor:
        aux = self.f2(x)
        out = self.f1(frequency_mean(aux))  # (B, C, 1, T), broadcast over frequency
        out = out + aux
        if not self.transition:
            out = out + x
        return torch.relu(out)


class BCResNetASC(ASCModel):
    """log-mel (B, 1, n_mels, frames) -> logits (B, n_classes)."""

    # Its depthwise convolutions, SubSpectralNorm reshapes and ResNorm transposes are no faster in
    # channels_last (c40 0.85x / 1.04x / 0.86x, c28 1.0x / 0.98x / 0.99x, c20 0.89x / 1.05x / 0.99x
    # of NCHW in three runs of benchmarks/train_speed.py): NCHW.
    channels_last = False
    bfloat16_training = True  # c20 / c28 / c40: 1.42x / 1.33x / 1.24x faster than float32 (NCHW)
    # onnxruntime's NCHWc reorders around each convolution cost more than they save: c20 1.11-1.12x
    # faster without them in three runs, 1.16x with ResNorm exported by reductions.
    onnx_layout_transforms = False
    LAYOUT = ("N", 1, 1, "N", "M", 1.5, 1.5, "N", "M", 2, 2, "N", 2.5, 2.5, 2.5, "N")

    def __init__(
        self,
        n_classes: int = 10,
        width: int = 40,
        sub_bands: int = 4,
        resnorm: bool = True,
        resnorm_lambda: float = 0.1,
        dropout: float = 0.1,
        n_mels: int = 256,
        frames: int = 431,
    ):
        super().__init__(n_mels, frames, f"bcresnet_asc c={width}")
        self.head = nn.Conv2d(1, 2 * width, 5, stride=2, padding=2, bias=False)
        layers: list[nn.Module] = []
        channels = 2 * width
        for item in self.LAYOUT:
            if item == "N":
                layers.append(ResNorm(resnorm_lambda) if resnorm else nn.Identity())
            elif item == "M":
                layers.append(MaxPool2d(2))
            else:
                out = int(item * width)
                layers.append(BCResBlock(channels, out, sub_bands, dropout))
                channels = out
        self.body = nn.Sequential(*layers)
        self.classifier = nn.Conv2d(channels, n_classes, 1)
        self.fuse_stem = True  # False: always the layered form (benchmarks/train_speed.py compares)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check(x)
        if self.stem_fusable(x):
            norm, block = self.body[0], self.body[1]
            z = fused_stem(x, self.head, norm if isinstance(norm, ResNorm) else None, block.pre[0])
            x = block.after_pointwise(z)
            for layer in self.body[2:]:
                x = layer(x)
        else:
            x = self.body(self.head(x))
        return self.classifier(x).mean(dim=(2, 3))

    def stem_fusable(self, x: torch.Tensor) -> bool:
        """Whether this forward takes ``fused_stem``: in training, on an eager CPU NCHW tensor (as the
        other fast paths), with the head, the first ResNorm and the first 1x1 convolution plain layers
        (not swapped, e.g. for 1-bit weights) and without hooks on them. Evaluation keeps the layered
        form, which MAC counts, size reports and per-layer hooks walk."""
        if not (self.fuse_stem and self.training and eager_cpu_nchw(x)):
            return False
        head, norm, block = self.head, self.body[0], self.body[1]
        if not (isinstance(block, BCResBlock) and block.transition):
            return False
        pointwise = block.pre[0]
        parts = (head, norm, pointwise)
        return (
            type(head) is nn.Conv2d
            and head.bias is None
            and head.groups == 1
            and head.padding_mode == "zeros"
            and not isinstance(head.padding, str)  # unfold takes the padding in numbers
            and type(norm) in (ResNorm, nn.Identity)
            and type(pointwise) in (Conv1x1, nn.Conv2d)  # nn.Conv2d: Conv1x1.for_quantization()'s
            and pointwise.kernel_size == pointwise.stride == (1, 1)
            and pointwise.groups == 1
            and pointwise.bias is None
            and not any(
                m._forward_hooks or m._forward_pre_hooks or m._backward_hooks or m._backward_pre_hooks
                for m in parts
            )
        )


# Variants: c20 (24,970 params) and c28 (the widest that fits at float16) ship as float16; c40 (85,730
# params) is meant for int8 plus pruning (at int8 alone its float32 SubSpectralNorm statistics keep it
# just above the limit); c80 is QTI's 315k model: a teacher, or the start of pruning plus int8.
register_variants(
    BCResNetASC,
    {
        "bcresnet_asc_c20": (dict(width=20), "float16", "budget"),
        "bcresnet_asc_c28": (dict(width=28), "float16", "budget"),
        "bcresnet_asc_c40": (dict(width=40), "int8", "prune"),
        "bcresnet_asc_c80": (dict(width=80), "float32", "teacher"),
    },
    FRONTEND_256,
    "BC-ResNet-ASC (Kim_QTI), SubSpectralNorm 4 bands, ResNorm",
)
