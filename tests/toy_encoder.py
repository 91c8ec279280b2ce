"""A deterministic few-parameter encoder for fast trainer tests (no random masking)."""

from __future__ import annotations

import torch
from torch import nn

from acula.encoders.base import AudioEncoder, InputContract


class ToyEncoder(AudioEncoder):
    name = "toy"

    def __init__(self, n_mels: int = 8, dim: int = 6):
        super().__init__()
        self.contract = InputContract(n_mels=n_mels, frames=16, max_frames=None, min_frames=1)
        self.feature_dim = dim
        self.proj = nn.Linear(n_mels, dim)
        self.dec = nn.Linear(dim, n_mels)
        self.config = {"name": "toy", "n_mels": n_mels, "dim": dim}

    def forward_feature(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.proj(x)).mean(1)

    def forward_mam(self, x, noise=None):
        mask = (torch.arange(x.shape[1], device=x.device) % 2 == 0).float()[None, :, None].expand_as(x)
        h = torch.tanh(self.proj(x * (1 - mask)))
        pred = self.dec(h)
        loss = (((pred - x) ** 2) * mask).sum() / mask.sum()
        return loss, pred, mask
