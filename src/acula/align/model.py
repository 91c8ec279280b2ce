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
    """Linear -> ReLU -> Dropout -> Linear, with the published key names (`layers.0`, `layers.3`).

    `input_norm` standardises the input over the batch first (BatchNorm without affine terms, key
    `input_norm.*`). Pooled encoder features are a large vector shared by every clip plus a small part
    that differs (measured on the demo's tiny OPERA-GT: mean norm 11.3, spread 0.4): dropout noise
    scales with the whole vector and swamps the part that carries the findings.
    """

    def __init__(self, in_dim: int, hidden_dim: int = 1024, out_dim: int = 512, dropout: float = 0.2,
                 input_norm: bool = False):
        super().__init__()
        if input_norm:
            self.input_norm = nn.BatchNorm1d(in_dim, affine=False)
        self.layers = nn.Sequential(
            nn.Linear(in_dim, hidden_dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden_dim, out_dim)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        norm = getattr(self, "input_norm", None)
        if norm is not None:
            if self.training and x.shape[0] < 2:  # batch statistics of one row do not exist; use the running ones
                x = nn.functional.batch_norm(x, norm.running_mean, norm.running_var, training=False, eps=norm.eps)
            else:
                x = norm(x)
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
        audio_input_norm: bool = True,
    ):
        super().__init__()
        self.encoder = encoder
        self.audio_projection = ProjectionMLP(encoder.feature_dim, hidden_dim, proj_dim, dropout, audio_input_norm)
        self.language_projection = ProjectionMLP(text_dim, hidden_dim, proj_dim, dropout)
        self.head_config = {"text_dim": text_dim, "hidden_dim": hidden_dim, "proj_dim": proj_dim, "dropout": dropout,
                            "audio_input_norm": audio_input_norm}

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
