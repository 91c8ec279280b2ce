"""OPERA-GT: OPERA's masked-autoencoder ViT (`mae_vit_small` -> `MaskedAutoencoderViTMD`, docs/protocol.md#opera-gt).

A clean re-implementation without timm that is key- and number-compatible with the published
checkpoints, so OPERA's and AcuLa's weights load strictly and give the same features. The MAM
decoder reproduces the published Swin decoder *including* its reshape quirk (see
`SwinQuirkBlock`); that is the only way to keep training the released decoder weights, as AcuLa
does. The `tiny` preset swaps it for a small standard ViT decoder, because the quirk only exists
when the decoder width equals 32*8.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from .base import AudioEncoder, InputContract
from .registry import register

PRESETS: dict[str, dict[str, Any]] = {
    # published sizes (docs/protocol.md#opera-gt); decoder_depth/heads are the 16/16 the original really builds
    "base": dict(
        img_size=(256, 64), patch_size=4, embed_dim=384, depth=12, num_heads=6, mlp_ratio=4.0,
        decoder="swin-quirk", decoder_embed_dim=256, decoder_depth=16, decoder_num_heads=16,
        window_policy="opera",
    ),
    # CPU demo size: 32x8 = 256 tokens for a 256x64 log-mel; a 64-d decoder keeps MAM cheap
    "tiny": dict(
        img_size=(256, 64), patch_size=8, embed_dim=128, depth=4, num_heads=4, mlp_ratio=4.0,
        decoder="vit", decoder_embed_dim=64, decoder_depth=2, decoder_num_heads=2,
        window_policy="acula",
    ),
}


def sincos_pos_embed(dim: int, grid_hw: tuple[int, int], cls_token: bool = True) -> torch.Tensor:
    """OPERA's `get_2d_sincos_pos_embed_flexible(dim, grid_hw)` -> (1, [1+] H*W, dim).

    Computed in float32 numpy like the original so the values match its stored tensors. OPERA
    passes grid_hw = (freq patches, time patches) while tokens are time-major, so token k gets
    [sincos(k mod W), sincos(k // W)]: the layout is "wrong" but it is what the weights learnt.
    """
    h, w = grid_hw
    gw, gh = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))

    def sincos_1d(d: int, pos: np.ndarray) -> np.ndarray:
        omega = np.arange(d // 2, dtype=np.float32)
        omega /= d / 2.0
        omega = 1.0 / 10000**omega
        out = np.einsum("m,d->md", pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    if dim % 4:
        raise ValueError(f"sin-cos position embedding needs a width divisible by 4, got {dim}")
    emb = np.concatenate([sincos_1d(dim // 2, gw), sincos_1d(dim // 2, gh)], axis=1)
    if cls_token:
        emb = np.concatenate([np.zeros([1, dim]), emb], axis=0)
    return torch.from_numpy(emb).float().unsqueeze(0)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int, out: int | None = None, act: type[nn.Module] = nn.GELU, drop: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = act()
        self.drop1 = nn.Dropout(drop)
        self.fc2 = nn.Linear(hidden, out or dim)
        self.drop2 = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop2(self.fc2(self.drop1(self.act(self.fc1(x)))))


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"width {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape
        q, k, v = self.qkv(x).view(B, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(B, N, C))


class Block(nn.Module):
    """Pre-norm ViT block (timm `Block`, qkv bias, no dropout)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, eps: float = 1e-6):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


def window_partition(x: torch.Tensor, win: tuple[int, int]) -> torch.Tensor:
    """(B, H, W, C) -> (B*nW, wh, ww, C)."""
    B, H, W, C = x.shape
    x = x.view(B, H // win[0], win[0], W // win[1], win[1], C)
    return x.permute(0, 1, 3, 2, 4, 5).contiguous().view(-1, win[0], win[1], C)


def window_reverse(windows: torch.Tensor, win: tuple[int, int], hw: tuple[int, int]) -> torch.Tensor:
    """(B*nW, wh, ww, C) -> (B, H, W, C)."""
    H, W = hw
    B = int(windows.shape[0] / (H * W / win[0] / win[1]))
    x = windows.view(B, H // win[0], W // win[1], win[0], win[1], -1)
    return x.permute(0, 1, 3, 2, 4, 5).contiguous().view(B, H, W, -1)


class CosineWindowAttention(nn.Module):
    """Swin-V2-style window attention: scaled cosine similarity + log-spaced continuous position bias."""

    def __init__(self, dim: int, num_heads: int, window: tuple[int, int], meta_hidden: int = 384, meta_drop: float = 0.1):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"width {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.window = window
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.meta_mlp = Mlp(2, meta_hidden, num_heads, act=nn.ReLU, drop=meta_drop)
        self.tau = nn.Parameter(torch.ones(num_heads))
        coords = torch.stack(torch.meshgrid(torch.arange(window[0]), torch.arange(window[1]), indexing="ij")).flatten(1)
        rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0).reshape(-1, 2).float()
        self.register_buffer("relative_coordinates_log", torch.sign(rel) * torch.log1p(rel.abs()), persistent=False)

    def position_bias(self) -> torch.Tensor:
        n = self.window[0] * self.window[1]
        bias = self.meta_mlp(self.relative_coordinates_log)  # (n*n, heads)
        return bias.transpose(1, 0).reshape(self.num_heads, n, n).unsqueeze(0)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        Bw, N, C = x.shape
        q, k, v = self.qkv(x).view(Bw, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
        denom = q.norm(dim=-1, keepdim=True) @ k.norm(dim=-1, keepdim=True).transpose(-2, -1)
        attn = q @ k.transpose(-2, -1) / denom.clamp(min=1e-6)
        attn = attn / self.tau.clamp(min=0.01).reshape(1, -1, 1, 1)
        attn = attn + self.position_bias()
        if mask is not None:  # mask: (num_windows, N, N), broadcast over the leading Bw // num_windows
            nw = mask.shape[0]
            attn = (attn.view(Bw // nw, nw, self.num_heads, N, N) + mask.unsqueeze(1).unsqueeze(0)).view(-1, self.num_heads, N, N)
        x = (attn.softmax(dim=-1) @ v).transpose(1, 2).reshape(Bw, N, -1)
        return self.proj(x)


class SwinQuirkBlock(nn.Module):
    """The patched-timm `SwinTransformerBlock` of OPERA's decoder, post-norm, reshape quirk included.

    The original views a (B, L, C) token sequence as (B, H, W, L) with H*W == C: a raw memory
    reinterpretation, so each "window" mixes token and channel axes. It is reproduced step for
    step (view, roll, partition, view) because the released decoder weights were trained on it.
    """

    def __init__(self, dim: int, num_heads: int, feat_size: tuple[int, int], window: tuple[int, int],
                 shift: tuple[int, int], mlp_ratio: float = 4.0, eps: float = 1e-6):
        super().__init__()
        if feat_size[0] * feat_size[1] != dim:
            raise ValueError(f"the Swin-quirk decoder needs feat_size H*W == width, got {feat_size} for width {dim}")
        self.feat_size = feat_size
        # as timm's _calc_window_shift: a window never exceeds the map, no shift where it fills it
        self.window = tuple(min(f, w) for f, w in zip(feat_size, window))
        self.shift = tuple(0 if f <= w else s for f, w, s in zip(feat_size, self.window, shift))
        self.attn = CosineWindowAttention(dim, num_heads, self.window)
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.register_buffer("attn_mask", self._shift_mask(), persistent=False)

    def _shift_mask(self) -> torch.Tensor | None:
        """-100 between positions that the cyclic shift made neighbours (standard Swin construction)."""
        if not any(self.shift):
            return None
        (H, W), (wh, ww), (sh, sw) = self.feat_size, self.window, self.shift
        img = torch.zeros(1, H, W, 1)  # with a zero shift on an axis its slices collapse to the full width
        cnt = 0
        for hs in (slice(0, -wh), slice(-wh, -sh), slice(-sh, None)):
            for ws in (slice(0, -ww), slice(-ww, -sw), slice(-sw, None)):
                img[:, hs, ws, :] = cnt
                cnt += 1
        win = window_partition(img, self.window).view(-1, wh * ww)
        diff = win.unsqueeze(1) - win.unsqueeze(2)
        return diff.masked_fill(diff != 0, -100.0).masked_fill(diff == 0, 0.0)

    def _shifted_window_attn(self, x: torch.Tensor) -> torch.Tensor:
        H, W = self.feat_size
        B, L, C = x.shape
        x = x.view(B, H, W, L)  # the quirk: (L, C) memory read as (H, W, L)
        if any(self.shift):
            x = torch.roll(x, shifts=(-self.shift[0], -self.shift[1]), dims=(1, 2))
        # B*L/16 "windows" of 16 x C; the 16-window shift mask repeats over them, which stays per-sample
        # only because L is a multiple of H*W (checked in forward_mam)
        win = window_partition(x, self.window).view(-1, self.window[0] * self.window[1], C)
        win = self.attn(win, mask=self.attn_mask)
        x = window_reverse(win.view(-1, self.window[0], self.window[1], C), self.window, self.feat_size)
        if any(self.shift):
            x = torch.roll(x, shifts=self.shift, dims=(1, 2))
        return x.view(B, L, C)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.norm1(self._shifted_window_attn(x))
        return x + self.norm2(self.mlp(x))


class PatchEmbed(nn.Module):
    """(B, T, F) -> (B, T/p * F/p, D), time-major tokens; T is floored to a multiple of p by the conv."""

    def __init__(self, patch_size: int, embed_dim: int):
        super().__init__()
        self.proj = nn.Conv2d(1, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x.unsqueeze(1)).flatten(2).transpose(1, 2)


class MaskedAutoencoderViT(AudioEncoder):
    """OPERA-GT encoder + MAM decoder. Input (B, T, n_mels) log-mel, time-major.

    `decoder="swin-quirk"` is the published decoder (its width must equal feat_size[0]*feat_size[1]);
    it only runs when the token count is a multiple of that area (T in {64, 128, 192, 256} for
    the base preset). `decoder="vit"` is a standard pre-norm MAE decoder that runs for any T.
    """

    name = "opera-gt"

    def __init__(
        self,
        img_size: tuple[int, int] = (256, 64),
        patch_size: int = 4,
        embed_dim: int = 384,
        depth: int = 12,
        num_heads: int = 6,
        mlp_ratio: float = 4.0,
        decoder: str = "swin-quirk",
        decoder_embed_dim: int = 256,
        decoder_depth: int = 16,
        decoder_num_heads: int = 16,
        decoder_feat_size: tuple[int, int] = (32, 8),
        decoder_window: tuple[int, int] = (4, 4),
        mask_ratio: float = 0.7,
        window_policy: str = "acula",
        grad_checkpointing: bool = False,
    ):
        super().__init__()
        frames, n_mels = img_size
        if frames % patch_size or n_mels % patch_size:
            raise ValueError(f"img_size {img_size} must be divisible by patch_size {patch_size}")
        if decoder not in ("swin-quirk", "vit"):
            raise ValueError(f"decoder must be 'swin-quirk' or 'vit', got {decoder!r}")
        self.patch_size = patch_size
        self.freq_patches = n_mels // patch_size
        self.grid_hw = (n_mels // patch_size, frames // patch_size)  # OPERA's patch_hw: (freq, time)
        num_patches = self.grid_hw[0] * self.grid_hw[1]
        self.mask_ratio = mask_ratio
        self.decoder_kind = decoder
        self.grad_checkpointing = grad_checkpointing
        self.feature_dim = embed_dim
        self.contract = InputContract(
            frontend="logmel", n_mels=n_mels, min_frames=patch_size, max_frames=frames, frames=frames,
            window_policy=window_policy,
        )

        # parameters first, in the published state-dict order
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(sincos_pos_embed(embed_dim, self.grid_hw), requires_grad=False)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_embed_dim))
        self.decoder_pos_embed = nn.Parameter(sincos_pos_embed(decoder_embed_dim, self.grid_hw), requires_grad=False)

        self.patch_embed = PatchEmbed(patch_size, embed_dim)
        self.blocks = nn.ModuleList(Block(embed_dim, num_heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)

        self.decoder_embed = nn.Linear(embed_dim, decoder_embed_dim)
        if decoder == "swin-quirk":
            shift = (decoder_window[0] // 2, 0)  # OPERA: (0,0) on even blocks, (2,0) on odd ones
            self.decoder_blocks = nn.ModuleList(
                SwinQuirkBlock(decoder_embed_dim, decoder_num_heads, tuple(decoder_feat_size), tuple(decoder_window),
                               shift=(0, 0) if i % 2 == 0 else shift, mlp_ratio=mlp_ratio)
                for i in range(decoder_depth)
            )
            self.decoder_feat_area = decoder_feat_size[0] * decoder_feat_size[1]
        else:
            self.decoder_blocks = nn.ModuleList(
                Block(decoder_embed_dim, decoder_num_heads, mlp_ratio) for _ in range(decoder_depth)
            )
        self.decoder_norm = nn.LayerNorm(decoder_embed_dim, eps=1e-6)
        self.decoder_pred = nn.Linear(decoder_embed_dim, patch_size**2)

        # recomputed deterministically if a checkpoint lacks them (see acula.encoders.checkpoint)
        self.ignorable_missing = ("pos_embed", "decoder_pos_embed")
        # older exports may carry the non-persistent Swin buffers; they are recomputed here
        self.ignorable_unexpected = ("decoder_blocks.*.attn_mask", "decoder_blocks.*.attn.relative_coordinates_log")
        # everything only the MAM pass uses; a features-only checkpoint may lack it
        self.decoder_prefixes = ("mask_token", "decoder_")
        self._init_weights()

    def _init_weights(self) -> None:
        """OPERA's initialisation: xavier-uniform linears (and patch conv as a linear), N(0, .02) tokens."""
        w = self.patch_embed.proj.weight.data
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.normal_(self.cls_token, std=0.02)
        nn.init.normal_(self.mask_token, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    # ---------------------------------------------------------------- encoder
    def num_tokens(self, frames: int) -> int:
        return (frames // self.patch_size) * self.freq_patches

    def _blocks(self, x: torch.Tensor) -> torch.Tensor:
        for blk in self.blocks:
            if self.grad_checkpointing and self.training and torch.is_grad_enabled():
                x = checkpoint(blk, x, use_reentrant=False)
            else:
                x = blk(x)
        return x

    def _with_cls(self, x: torch.Tensor) -> torch.Tensor:
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(x.shape[0], -1, -1)
        return torch.cat([cls, x], dim=1)

    def forward_feature(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, n_mels) -> (B, D): mean of the patch tokens (CLS excluded), then the final LayerNorm."""
        self.check_input(x)
        x = self.patch_embed(x)
        x = self._blocks(self._with_cls(x + self.pos_embed[:, 1 : x.shape[1] + 1]))
        return self.norm(x[:, 1:].mean(dim=1))

    # ---------------------------------------------------------------- masked audio modelling
    def random_masking(self, x: torch.Tensor, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Keep the int(L*(1-ratio)) tokens with the smallest noise; mask is 1 where removed."""
        B, L, D = x.shape
        keep = int(L * (1 - self.mask_ratio))
        ids_shuffle = torch.argsort(noise, dim=1)
        ids_restore = torch.argsort(ids_shuffle, dim=1)
        kept = torch.gather(x, 1, ids_shuffle[:, :keep, None].expand(-1, -1, D))
        mask = torch.ones(B, L, device=x.device, dtype=x.dtype)
        mask[:, :keep] = 0
        return kept, torch.gather(mask, 1, ids_restore), ids_restore

    def patchify(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, F) -> (B, L, p*p) in token order, pixels (time, freq) within a patch."""
        B, T, Fb = x.shape
        p = self.patch_size
        h, w = T // p, Fb // p
        x = x[:, : h * p, : w * p].reshape(B, h, p, w, p)
        return torch.einsum("bhpwq->bhwpq", x).reshape(B, h * w, p * p)

    def forward_decoder(self, x: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
        x = self.decoder_embed(x)
        B, L = ids_restore.shape
        D = x.shape[2]
        x_ = torch.cat([x[:, 1:], self.mask_token.expand(B, L + 1 - x.shape[1], -1)], dim=1)
        x_ = torch.gather(x_, 1, ids_restore[:, :, None].expand(-1, -1, D))
        x = torch.cat([x[:, :1], x_], dim=1) + self.decoder_pos_embed[:, : L + 1]
        if self.decoder_kind == "swin-quirk":
            x = x[:, 1:]  # OPERA decoder_mode=1 drops the CLS before the Swin blocks
        for blk in self.decoder_blocks:
            x = blk(x)
        pred = self.decoder_pred(self.decoder_norm(x))
        return pred if self.decoder_kind == "swin-quirk" else pred[:, 1:]

    def mam_loss(self, x: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Per-patch MSE on raw log-mel targets, averaged over masked patches only."""
        loss = ((pred - self.patchify(x)) ** 2).mean(dim=-1)
        return (loss * mask).sum() / mask.sum()

    def forward_mam(
        self, x: torch.Tensor, noise: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Masked pass: (loss, pred (B, L, p*p), mask (B, L), 1 = masked). `noise` (B, L) replaces torch.rand."""
        loss, pred, mask, _ = self._masked_pass(x, noise, decode=True)
        return loss, pred, mask

    def _check_decoder_length(self, T: int, L: int) -> None:
        if self.decoder_kind == "swin-quirk" and L % self.decoder_feat_area:
            step = self.decoder_feat_area // self.freq_patches * self.patch_size
            raise ValueError(
                f"{self.name}: the published Swin MAM decoder reinterprets (tokens, channels) memory and only runs "
                f"when the token count is a multiple of {self.decoder_feat_area}, i.e. frames a multiple of {step} "
                f"({', '.join(str(step * i) for i in range(1, self.contract.max_frames // step + 1))}); got {T} frames "
                f"({L} tokens). forward_feature accepts any length."
            )

    masks_tokens = True

    def forward_mam_feature(
        self, x: torch.Tensor, noise: torch.Tensor | None = None, decode: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One masked pass: (MAM loss, or 0 without `decode`; the visible patch tokens pooled as
        `forward_feature` pools all of them: their mean, then the final LayerNorm)."""
        loss, _, _, feature = self._masked_pass(x, noise, decode)
        return loss, feature

    def _masked_pass(self, x: torch.Tensor, noise: torch.Tensor | None, decode: bool):
        self.check_input(x)
        B, T, _ = x.shape
        L = self.num_tokens(T)
        if decode:
            self._check_decoder_length(T, L)
        if noise is None:
            noise = torch.rand(B, L, device=x.device)
        elif tuple(noise.shape) != (B, L):
            raise ValueError(f"{self.name}: masking noise must have shape {(B, L)}, got {tuple(noise.shape)}")
        tokens = self.patch_embed(x) + self.pos_embed[:, 1 : L + 1]
        kept, mask, ids_restore = self.random_masking(tokens, noise.to(tokens.device))
        hidden = self._blocks(self._with_cls(kept))
        feature = self.norm(hidden[:, 1:].mean(dim=1))
        if not decode:
            return x.new_zeros(()), None, mask, feature
        pred = self.forward_decoder(self.norm(hidden), ids_restore)
        return self.mam_loss(x, pred, mask), pred, mask, feature


@register("opera-gt")
def opera_gt(preset: str = "base", **overrides: Any) -> MaskedAutoencoderViT:
    """OPERA-GT; `preset` is "base" (published, loads OPERA/AcuLa checkpoints) or "tiny" (CPU demo)."""
    if preset not in PRESETS:
        raise ValueError(f"opera-gt: unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
    kwargs = {**PRESETS[preset], **overrides}
    for key in ("img_size", "decoder_feat_size", "decoder_window"):
        if key in kwargs:  # JSON configs round-trip tuples as lists
            kwargs[key] = tuple(kwargs[key])
    return MaskedAutoencoderViT(**kwargs)
