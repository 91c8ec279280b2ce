"""The one encode-and-pool loop: windows of many clips through a network in bounded batches, averaged per clip.

Every command's features come from here (files, the log-mel cache, whole clips, layers, fine-tuning, the demo,
the HEAR API), so a clip's feature is the same wherever it is computed: the sum of its window features in
window order, divided by their count. Windows of one shape share a batch; a clip's windows may span batches,
never its feature's order of summation. Autograd flows through when the caller is not in inference mode.
"""

from __future__ import annotations

from typing import Callable, Hashable, Iterable

import numpy as np
import torch


class Pooler:
    """Push clips' windows with `add`, get each clip's mean feature from `finish`.

    `forward` maps a (B, ...) batch of windows to (B, D) features (device moves are its business). At most
    `batch_size` windows go through it at once (None: everything pending, grouped by shape, in `finish`); when
    windows of several shapes are pending and together reach `batch_size`, each shape goes as it is, so memory
    stays bounded by one batch.
    """

    def __init__(self, forward: Callable[[torch.Tensor], torch.Tensor], batch_size: int | None = None):
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.forward, self.batch_size = forward, batch_size
        self._piles: dict[tuple, list[tuple[Hashable, torch.Tensor]]] = {}  # window shape -> (clip, window)
        self._sums: dict[Hashable, torch.Tensor] = {}
        self._counts: dict[Hashable, int] = {}

    def add(self, clip: Hashable, windows: torch.Tensor | Iterable[torch.Tensor]) -> None:
        for w in windows:
            self._piles.setdefault(tuple(w.shape), []).append((clip, w))
        if self.batch_size is None:
            return
        for pile in self._piles.values():
            while len(pile) >= self.batch_size:
                self._run(pile, self.batch_size)
        if sum(len(p) for p in self._piles.values()) >= self.batch_size:
            self.flush()

    def flush(self) -> None:
        for pile in self._piles.values():
            while pile:
                self._run(pile, self.batch_size or len(pile))
        self._piles.clear()

    def _run(self, pile: list, n: int) -> None:
        head = pile[:n]
        del pile[:n]
        f = self.forward(torch.stack([w for _, w in head]))
        for (clip, _), v in zip(head, f):
            self._sums[clip] = self._sums[clip] + v if clip in self._sums else v.clone()
            self._counts[clip] = self._counts.get(clip, 0) + 1

    def finish(self) -> dict[Hashable, torch.Tensor]:
        """{clip: mean feature} of every clip added since the last finish."""
        self.flush()
        out = {k: s / self._counts[k] for k, s in self._sums.items()}
        self._sums, self._counts = {}, {}
        return out


def feature_forward(encoder, device: str | torch.device = "cpu", to_cpu: bool = True, precision: str = "fp32"):
    """`encoder.forward_feature` on `device` (under bf16 autocast with `precision` "bf16"), as float32 (back on
    the CPU unless told otherwise)."""
    from ..encoders.precision import autocast

    def forward(x: torch.Tensor) -> torch.Tensor:
        with autocast(precision, device):
            f = encoder.forward_feature(x.to(device)).float()
        return f.cpu() if to_cpu else f

    return forward


def pool_clips(forward: Callable[[torch.Tensor], torch.Tensor], clips: Iterable[torch.Tensor],
               batch_size: int | None = None) -> torch.Tensor:
    """(N, D) mean features of N clips, each a (K, ...) stack of windows."""
    pooler = Pooler(forward, batch_size)
    n = 0
    for i, c in enumerate(clips):
        pooler.add(i, c)
        n = i + 1
    means = pooler.finish()
    return torch.stack([means[i] for i in range(n)])


def encode_windows(forward: Callable[[torch.Tensor], torch.Tensor], windows: torch.Tensor | np.ndarray,
                   batch_size: int | None = None) -> torch.Tensor:
    """(N, D) features of N single windows (no pooling: each window is its own clip)."""
    x = torch.from_numpy(np.asarray(windows)) if isinstance(windows, np.ndarray) else windows
    return pool_clips(forward, (w[None] for w in x), batch_size)


def finite_means(means: dict[int, torch.Tensor]) -> tuple[dict[int, np.ndarray], list[int]]:
    """({clip: float32 vector}, clips whose feature is not finite): a non-finite embedding is never returned."""
    rows, bad = {}, []
    for i in sorted(means):
        v = means[i]
        if torch.isfinite(v).all():
            rows[i] = v.numpy().astype(np.float32)
        else:
            bad.append(i)
    return rows, bad
