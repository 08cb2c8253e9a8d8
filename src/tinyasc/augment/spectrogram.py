"""Spectrogram-side augmentation of normalised log-mel batches (B, 1, F, T).

- ``SpecAugment`` (Park et al. 2019): ``freq_masks`` masks of up to ``freq_width`` bins and
  ``time_masks`` masks of up to ``time_width`` frames per clip, set to 0 (the normalised mean).
- ``FreqMixStyle`` (Schmid et al., CP-JKU 2022, reference ``top_systems.md`` 5.1): per-clip frequency
  statistics (mean and standard deviation over channels and time for every frequency bin) are mixed with
  those of a randomly permuted clip, lambda ~ Beta(alpha, alpha), applied to the whole batch with
  probability ``p``; the clip keeps its normalised content and takes the mixed statistics.
- ``FreqShift``: every clip is shifted along frequency by a random integer number of bins in
  ``[-max_shift, max_shift]``, the vacated bins repeating the edge bin (a cheap filter augmentation).
"""

from __future__ import annotations

import torch
from torch import nn


class SpecAugment(nn.Module):
    def __init__(self, freq_masks: int = 2, freq_width: int = 8, time_masks: int = 2, time_width: int = 20):
        super().__init__()
        self.freq_masks, self.freq_width = freq_masks, freq_width
        self.time_masks, self.time_width = time_masks, time_width

    @staticmethod
    def _masks(n: int, size: int, count: int, width: int, device) -> torch.Tensor:
        """(n, size) boolean: ``count`` random spans of width 0..width per row."""
        keep = torch.zeros(n, size, dtype=torch.bool, device=device)
        if count <= 0 or width <= 0:
            return keep
        pos = torch.arange(size, device=device)
        for _ in range(count):
            w = torch.randint(0, width + 1, (n, 1), device=device)
            start = (torch.rand(n, 1, device=device) * (size - w + 1).clamp(min=1)).long()
            keep |= (pos >= start) & (pos < start + w)
        return keep

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        b, _, f, t = x.shape
        fm = self._masks(b, f, self.freq_masks, min(self.freq_width, f), x.device)
        tm = self._masks(b, t, self.time_masks, min(self.time_width, t), x.device)
        mask = fm[:, None, :, None] | tm[:, None, None, :]
        return x.masked_fill(mask, 0.0)


class FreqMixStyle(nn.Module):
    def __init__(self, p: float = 0.4, alpha: float = 0.3, eps: float = 1e-6):
        super().__init__()
        self.p, self.alpha, self.eps = p, alpha, eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p <= 0 or torch.rand(()) > self.p or x.shape[0] < 2:
            return x
        b = x.shape[0]
        mu = x.mean(dim=(1, 3), keepdim=True)
        sig = (x.var(dim=(1, 3), keepdim=True) + self.eps).sqrt()
        normed = (x - mu) / sig
        lam = torch.distributions.Beta(self.alpha, self.alpha).sample((b, 1, 1, 1)).to(x)
        perm = torch.randperm(b, device=x.device)
        mu_mix = lam * mu + (1 - lam) * mu[perm]
        sig_mix = lam * sig + (1 - lam) * sig[perm]
        return normed * sig_mix + mu_mix


class FreqShift(nn.Module):
    def __init__(self, max_shift: int = 4):
        super().__init__()
        self.max_shift = max_shift

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.max_shift <= 0:
            return x
        b, _, f, _ = x.shape
        shift = torch.randint(-self.max_shift, self.max_shift + 1, (b,), device=x.device)
        src = (torch.arange(f, device=x.device)[None, :] - shift[:, None]).clamp(0, f - 1)  # (B, F)
        index = src[:, None, :, None].expand(b, x.shape[1], f, x.shape[3])
        return torch.gather(x, 2, index)
