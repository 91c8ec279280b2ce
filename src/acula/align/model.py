"""The AcuLa alignment model: a trainable audio encoder plus two projection heads.

The text side never sees the language model: it receives cached report embeddings, so the
frozen LM runs once per unique report, not once per step (SPEC §3.6.5). Head widths come from
the encoder's `feature_dim` and the teacher's hidden size (the published code hard-codes 384 and
2048, which fits neither OPERA-CT/CE nor MedGemma-4B's 2560).
"""

from __future__ import annotations

import torch
from torch import nn

from ..encoders.base import AudioEncoder


class ProjectionMLP(nn.Module):
    """Linear -> ReLU -> Dropout -> Linear, with the published key names (`layers.0`, `layers.3`)."""

    def __init__(self, in_dim: int, hidden_dim: int = 1024, out_dim: int = 512, dropout: float = 0.2):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(in_dim, hidden_dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden_dim, out_dim)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class AculaModel(nn.Module):
    """Encoder + audio/language projections. `forward` returns everything one step needs.

    Everything goes through `forward` so DistributedDataParallel sees one call per step; the
    alignment loss itself is computed outside, on projections gathered from all processes.
    """

    def __init__(
        self,
        encoder: AudioEncoder,
        text_dim: int,
        hidden_dim: int = 1024,
        proj_dim: int = 512,
        dropout: float = 0.2,
    ):
        super().__init__()
        self.encoder = encoder
        self.audio_projection = ProjectionMLP(encoder.feature_dim, hidden_dim, proj_dim, dropout)
        self.language_projection = ProjectionMLP(text_dim, hidden_dim, proj_dim, dropout)
        self.head_config = {"text_dim": text_dim, "hidden_dim": hidden_dim, "proj_dim": proj_dim, "dropout": dropout}

    def forward(
        self, x: torch.Tensor, text_emb: torch.Tensor, with_mam: bool = True, mam_noise: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns (audio projections, text projections, MAM loss or 0)."""
        mam = self.encoder.forward_mam(x, noise=mam_noise)[0] if with_mam else x.new_zeros(())
        audio = self.audio_projection(self.encoder.forward_feature(x).float())
        text = self.language_projection(text_emb.float())
        return audio, text, mam

    def embed_audio(self, x: torch.Tensor) -> torch.Tensor:
        return self.audio_projection(self.encoder.forward_feature(x).float())

    def embed_text(self, text_emb: torch.Tensor) -> torch.Tensor:
        return self.language_projection(text_emb.float())
