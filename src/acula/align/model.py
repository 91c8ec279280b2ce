"""The AcuLa alignment model: a trainable audio encoder plus two projection heads.

The text side never sees the language model: it receives cached report embeddings, so the
frozen LM runs once per unique report, not once per step. Head widths come from the encoder's
`feature_dim` and the teacher's hidden size (the published code hard-codes 384 and 2048, which fits
neither OPERA-CT/CE nor MedGemma-4B's 2560). Both bugs: docs/protocol.md#published-bugs, items 3 and 5.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import torch
from torch import nn

from ..encoders.base import AudioEncoder

if TYPE_CHECKING:
    from ..encoders.checkpoint import Checkpoint


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
        align_features: str = "full",
    ):
        super().__init__()
        self.encoder = encoder
        self.align_features = align_features
        self.audio_projection = ProjectionMLP(encoder.feature_dim, hidden_dim, proj_dim, dropout, audio_input_norm)
        self.language_projection = ProjectionMLP(text_dim, hidden_dim, proj_dim, dropout)
        self.head_config = {"text_dim": text_dim, "hidden_dim": hidden_dim, "proj_dim": proj_dim, "dropout": dropout,
                            "audio_input_norm": audio_input_norm}

    @property
    def align_features(self) -> str:
        return self._align_features

    @align_features.setter
    def align_features(self, mode: str) -> None:
        if mode not in ("full", "masked"):
            raise ValueError(f"align_features must be 'full' or 'masked', got {mode!r}")
        if mode == "masked" and not self.encoder.masks_tokens:
            raise ValueError(f"--align-features masked: {self.encoder.name} drops no tokens when masking, so a "
                             "masked pass would cost as much as a full one; use --align-features full")
        self._align_features = mode

    def forward(
        self, x: torch.Tensor, text_emb: torch.Tensor, with_mam: bool = True, mam_noise: torch.Tensor | None = None,
        with_align: bool = True,
    ) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor]:
        """Returns (audio projections, text projections, MAM loss or 0).

        `full` (published) runs the encoder twice: masked for MAM, unmasked for the alignment features.
        `masked` runs it once and aligns the pooled visible tokens (FLIP); in eval mode it is `full`'s
        unmasked pass, so held-out measurements and embeddings never see a mask. `with_align=False`
        (MAM only) skips the alignment features, whose loss would be weighted 0: (None, None, MAM)."""
        if not with_align:
            return None, None, self.encoder.forward_mam(x, noise=mam_noise)[0] if with_mam else x.new_zeros(())
        if self.align_features == "masked" and self.training:
            mam, feature = self.encoder.forward_mam_feature(x, noise=mam_noise, decode=with_mam)
        else:
            mam = self.encoder.forward_mam(x, noise=mam_noise)[0] if with_mam else x.new_zeros(())
            feature = self.encoder.forward_feature(x)
        audio = self.audio_projection(feature.float())
        text = self.language_projection(text_emb.float())
        return audio, text, mam

    def embed_audio(self, x: torch.Tensor) -> torch.Tensor:
        return self.audio_projection(self.encoder.forward_feature(x).float())

    def embed_text(self, text_emb: torch.Tensor) -> torch.Tensor:
        return self.language_projection(text_emb.float())


def load_aligned(checkpoint: str | os.PathLike, trust_checkpoint: bool = False,
                 device: str | torch.device = "cpu") -> tuple[AculaModel, Checkpoint]:
    """Rebuild encoder + both projection heads from an AcuLa checkpoint (eval mode, dropout off)."""
    from ..encoders import create
    from ..encoders.checkpoint import CheckpointError, load_into, read_checkpoint
    from ..encoders.hub import attach_config

    ck = attach_config(read_checkpoint(checkpoint, trust_checkpoint))  # the published AcuLa file names no encoder
    heads = ck.projection_heads or {}
    missing = [h for h in ("audio", "language") if h not in heads]
    if missing:
        raise CheckpointError(f"{ck.path}: no {' and '.join(missing)} projection head(s); zero-shot and retrieval "
                              "need an AcuLa alignment checkpoint (acula_final.pt), not an encoder-only file")
    enc = (ck.config or {}).get("encoder")
    if not isinstance(enc, dict) or "name" not in enc:
        raise CheckpointError(f"{ck.path}: the checkpoint config does not name its encoder (config['encoder'])")
    encoder = create(enc["name"], **{k: v for k, v in enc.items() if k != "name"})
    load_into(encoder, ck, allow_missing_decoder=True)  # the decoder plays no part in embedding
    # head widths from the tensors themselves, so a config written by another version cannot disagree
    audio_w0, lang_w0 = heads["audio"]["layers.0.weight"], heads["language"]["layers.0.weight"]
    proj_dim = heads["language"]["layers.3.weight"].shape[0]
    model = AculaModel(encoder, text_dim=lang_w0.shape[1], hidden_dim=lang_w0.shape[0], proj_dim=proj_dim,
                       dropout=float(((ck.config or {}).get("heads") or {}).get("dropout", 0.0)),
                       audio_input_norm="input_norm.running_mean" in heads["audio"])
    if audio_w0.shape[1] != encoder.feature_dim:
        raise CheckpointError(f"{ck.path}: audio projection expects {audio_w0.shape[1]}-d features, encoder "
                              f"{enc['name']} gives {encoder.feature_dim}")
    for name, module in (("audio", model.audio_projection), ("language", model.language_projection)):
        try:
            module.load_state_dict(heads[name], strict=True)
        except RuntimeError as e:
            raise CheckpointError(f"{ck.path}: {name} projection head does not fit: {e}") from None
    return model.to(device).eval(), ck
