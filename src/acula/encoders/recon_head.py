"""Masked-spectrogram reconstruction from a pooled embedding: the MAM regulariser for CNN/Swin students.

AcuLa keeps OPERA-GT's masked-autoencoder loss beside the alignment loss (λ_mam·MAM) so that
pulling the embedding towards the language model does not erase what it knows about the sound.
OPERA-CT and OPERA-CE were pretrained contrastively and ship no decoder, so the same regulariser
needs a head of its own. This one is deliberately *bottlenecked through the pooled feature*:

- the encoder sees the clip with 70% of its time-frequency patches replaced by the clip mean
  (the fill COLA's own `random_mask` augmentation uses, so the masked input stays in the
  distribution these encoders were pretrained on);
- the decoder reads nothing but the encoder's pooled (B, D) vector, expanded into a few memory
  tokens, and each masked patch is predicted by a learned query (frequency band embedding plus a
  fixed sin-cos time code) that cross-attends to that memory.

Because the only path from the visible audio to the prediction is the very vector used for
alignment and for downstream probes, the loss can only fall if that vector keeps the clip's
spectro-temporal content (where energy sits in time and frequency), which is exactly what the
alignment term might otherwise trade away. A per-token decoder (as in GT's MAE) would instead let
the token map carry the information and leave the pooled embedding unconstrained.

The head's parameters are not part of any published checkpoint: encoders register it as
`mam_head.*` and list that prefix as ignorable-missing, so OPERA checkpoints still load strictly.
Masking follows OPERA-GT's `random_masking` (argsort of uniform noise, lowest `1 - ratio` kept),
so a caller-supplied `noise` of shape (B, L) makes the pass deterministic in the same way.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn


def sincos_1d(positions: torch.Tensor, dim: int) -> torch.Tensor:
    """(N,) positions -> (N, dim) [sin | cos] code, MAE's frequency ladder; any length works."""
    half = dim // 2
    omega = 1.0 / 10000 ** (torch.arange(half, dtype=torch.float32, device=positions.device) / half)
    ang = positions.float()[:, None] * omega[None]
    return torch.cat([ang.sin(), ang.cos()], dim=1)


class MaskedSpectrogramHead(nn.Module):
    """Mask patches of a (B, T, F) log-mel, encode, reconstruct masked patches from the pooled feature.

    Sizes derive from the encoder and the grid: decoder width ~ feature_dim/8 (a multiple of 32,
    one head per 32 channels), one memory token per frequency band of the patch grid. The feature
    reaches the memory through a width-`dim` bottleneck, which keeps the head small next to the
    encoder it regularises (0.23 M parameters for CT, 0.63 M for CE).
    """

    def __init__(
        self,
        feature_dim: int,
        n_mels: int,
        patch: tuple[int, int] = (8, 8),
        mask_ratio: float = 0.7,
        dim: int | None = None,
        mlp_ratio: float = 2.0,
    ):
        super().__init__()
        pt, pf = patch
        if n_mels % pf:
            raise ValueError(f"MaskedSpectrogramHead: n_mels {n_mels} is not divisible by the patch height {pf}")
        if not 0.0 < mask_ratio < 1.0:
            raise ValueError(f"MaskedSpectrogramHead: mask_ratio must be in (0, 1), got {mask_ratio}")
        self.patch = (pt, pf)
        self.freq_patches = n_mels // pf
        self.mask_ratio = mask_ratio
        dim = dim or max(32, 32 * round(feature_dim / 256))
        self.dim = dim
        self.memory_tokens = self.freq_patches

        self.memory = nn.Sequential(nn.Linear(feature_dim, dim), nn.GELU(), nn.Linear(dim, self.memory_tokens * dim))
        self.memory_norm = nn.LayerNorm(dim)
        self.freq_embed = nn.Parameter(torch.zeros(self.freq_patches, dim))
        self.query_norm = nn.LayerNorm(dim)
        self.cross_attn = nn.MultiheadAttention(dim, max(1, dim // 32), batch_first=True)
        self.mlp_norm = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
        self.out_norm = nn.LayerNorm(dim)
        self.pred = nn.Linear(dim, pt * pf)
        nn.init.normal_(self.freq_embed, std=0.02)

    def grid(self, frames: int) -> tuple[int, int]:
        """(time patches, freq patches) of a clip; trailing frames short of a patch are dropped."""
        return frames // self.patch[0], self.freq_patches

    def patchify(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, F) -> (B, L, pt*pf), time-major tokens, (time, freq) pixel order like OPERA-GT."""
        B = x.shape[0]
        (pt, pf), (nt, nf) = self.patch, self.grid(x.shape[1])
        x = x[:, : nt * pt].reshape(B, nt, pt, nf, pf)
        return x.permute(0, 1, 3, 2, 4).reshape(B, nt * nf, pt * pf)

    def unpatchify(self, p: torch.Tensor, frames: int) -> torch.Tensor:
        B = p.shape[0]
        (pt, pf), (nt, nf) = self.patch, self.grid(frames)
        return p.reshape(B, nt, nf, pt, pf).permute(0, 1, 3, 2, 4).reshape(B, nt * pt, nf * pf)

    def random_mask(self, B: int, L: int, noise: torch.Tensor | None, device: torch.device) -> torch.Tensor:
        """(B, L) float mask, 1 = masked; the `int(L*(1-ratio))` lowest-noise patches stay visible."""
        if noise is None:
            noise = torch.rand(B, L, device=device)
        elif noise.shape != (B, L):
            raise ValueError(f"MAM noise must have shape (batch, patches) = {(B, L)}, got {tuple(noise.shape)}")
        keep = int(L * (1 - self.mask_ratio))
        ids_restore = torch.argsort(torch.argsort(noise.to(device), dim=1), dim=1)
        mask = torch.ones(B, L, device=device)
        mask[:, :keep] = 0
        return torch.gather(mask, 1, ids_restore)

    def decode(self, feature: torch.Tensor, frames: int) -> torch.Tensor:
        """(B, D) pooled feature -> (B, L, pt*pf) prediction of every patch of a `frames`-long clip."""
        B = feature.shape[0]
        nt, nf = self.grid(frames)
        memory = self.memory_norm(self.memory(feature).view(B, self.memory_tokens, self.dim))
        t_code = sincos_1d(torch.arange(nt, device=feature.device), self.dim)
        query = (t_code[:, None, :] + self.freq_embed[None]).reshape(1, nt * nf, self.dim).expand(B, -1, -1)
        x = query + self.cross_attn(self.query_norm(query), memory, memory, need_weights=False)[0]
        x = x + self.mlp(self.mlp_norm(x))
        return self.pred(self.out_norm(x))

    def forward(
        self,
        x: torch.Tensor,
        encode: Callable[[torch.Tensor], torch.Tensor],
        noise: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x (B, T, F) -> (loss, pred (B, L, pt*pf), mask (B, L)); `encode` maps (B, T, F) -> (B, D).

        Frames after the last whole patch are neither masked nor scored, but the encoder still
        sees them, so any clip the encoder accepts works here.
        """
        B, T, _ = x.shape
        nt, nf = self.grid(T)
        if nt == 0:
            raise ValueError(f"MAM needs at least {self.patch[0]} frames (one patch), got {T}")
        n = nt * self.patch[0]
        target = self.patchify(x)
        mask = self.random_mask(B, nt * nf, noise, x.device)
        fill = x.mean(dim=(1, 2), keepdim=True)  # the clip mean, as COLA's random_mask
        pixel_mask = torch.zeros_like(x, dtype=torch.bool)
        pixel_mask[:, :n] = self.unpatchify(mask[:, :, None].expand_as(target), n).bool()
        pred = self.decode(encode(torch.where(pixel_mask, fill, x)), T)
        loss = ((pred - target) ** 2).mean(dim=-1)
        loss = (loss * mask).sum() / mask.sum().clamp_min(1.0)
        return loss, pred, mask
