"""Device translation (the simplest honest form of Kim_QTI's device augmentation).

QTI translated device-A spectrograms into pseudo recordings of other devices with a learned
spectrogram-to-spectrogram model (reference ``top_systems.md`` 2.6). Here the translation is the
per-device **spectral transfer** learned from the parallel recordings of the training part: for every
device d with recordings of the same (scene, city, location, segment) as device A,
``delta_d[f] = mean over pairs of (time-mean log-mel of d) - (time-mean log-mel of A)`` per mel band, i.e.
the log-magnitude response of d relative to A (a static equaliser; time-varying effects such as AGC or
compression are not modelled). In training, each device-A clip is, with probability ``p``, shifted by
the transfer of a random other device. On normalised features the shift is ``delta_d / std``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def parallel_key(clip) -> tuple:
    return (clip.scene, clip.city, clip.location, clip.segment)


def learn_device_transfer(
    clips, features: np.ndarray, rows: np.ndarray, reference: str = "a"
) -> dict[str, np.ndarray]:
    """``{device: delta (n_mels,)}`` from pairs of ``reference`` and device recordings of one segment.

    ``clips[i]`` has its log-mel at ``features[rows[i]]`` (n_mels, frames). Devices without a parallel
    recording of the reference are left out.
    """
    ref: dict[tuple, int] = {}
    for i, c in enumerate(clips):
        if c.device == reference:
            ref[parallel_key(c)] = i
    sums: dict[str, np.ndarray] = {}
    counts: dict[str, int] = {}
    for i, c in enumerate(clips):
        j = ref.get(parallel_key(c))
        if c.device == reference or j is None:
            continue
        diff = features[rows[i]].astype(np.float64).mean(axis=1) - features[rows[j]].astype(np.float64).mean(
            axis=1
        )
        sums[c.device] = sums.get(c.device, 0) + diff
        counts[c.device] = counts.get(c.device, 0) + 1
    return {d: (sums[d] / counts[d]).astype(np.float32) for d in sorted(sums)}


class DeviceTranslation(nn.Module):
    """Add a random device's spectral transfer to reference-device clips (normalised features)."""

    def __init__(self, transfers: dict[str, np.ndarray], std: torch.Tensor, p: float = 0.5):
        super().__init__()
        if not transfers:
            raise ValueError("device translation: no device has parallel recordings of the reference device")
        self.devices = list(transfers)
        deltas = torch.from_numpy(np.stack([transfers[d] for d in self.devices]))  # (D, F)
        self.register_buffer("deltas", deltas / std.reshape(1, -1).cpu())
        self.p = p

    def forward(self, x: torch.Tensor, is_reference: torch.Tensor) -> torch.Tensor:
        """x (B, 1, F, T) normalised; ``is_reference`` (B,) bool: the clips that may be translated."""
        if not self.training or self.p <= 0:
            return x
        b = x.shape[0]
        pick = torch.randint(0, len(self.devices), (b,), device=x.device)
        apply = is_reference.to(x.device) & (torch.rand(b, device=x.device) < self.p)
        shift = self.deltas[pick] * apply[:, None].to(x.dtype)  # (B, F)
        return x + shift[:, None, :, None]
