"""What OPERA-CT and OPERA-CE share: OPERA's `Cola` wrapper around a backbone.

Both published checkpoints are `Cola(encoder=...)`: a backbone latent plus the contrastive
heads `g`, `layer_norm`, `linear` (kept so the checkpoints load strictly). Neither has a
reconstruction decoder, so acula adds a masked-spectrogram head (`mam_head`) for λ_mam.
Subclasses build the backbone and define `latent(x)`: (B, T, F) log-mel -> (B, feature_dim).
"""

from __future__ import annotations

import torch
from torch import nn

from .base import AudioEncoder
from .recon_head import MaskedSpectrogramHead


class ColaEncoder(AudioEncoder):
    def _add_cola_heads(self, dim_out: int, n_mels: int, mam_patch: tuple[int, int], mam_ratio: float) -> None:
        # Cola's dim_hidden = min(1280, feature_dim) = feature_dim, so there is no `middle` layer
        self.g = nn.Linear(self.feature_dim, dim_out)
        self.layer_norm = nn.LayerNorm(dim_out)
        self.linear = nn.Linear(dim_out, dim_out, bias=False)
        self.mam_head = MaskedSpectrogramHead(self.feature_dim, n_mels, tuple(mam_patch), mam_ratio)
        self.decoder_prefixes = ("mam_head.",)  # what an encoder-only export may leave out

    def latent(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def extract_feature(self, x: torch.Tensor, dim: int | None = None) -> torch.Tensor:
        """Cola's `extract_feature`: the backbone latent if dim == feature_dim, `g` of it if dim == dim_out."""
        dim = self.feature_dim if dim is None else dim
        z = self.latent(x)
        if dim == self.feature_dim:
            return z
        if dim == self.g.out_features:
            return self.g(z)
        raise ValueError(
            f"{self.name}: extract_feature dim must be {self.feature_dim} or {self.g.out_features}, got {dim}")

    def forward_feature(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        return self.extract_feature(x, self.feature_dim)

    def forward_mam(
        self, x: torch.Tensor, noise: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        self.check_input(x)
        return self.mam_head(x, lambda m: self.extract_feature(m, self.feature_dim), noise)
