"""OPERA-CT: the HTS-AT Swin transformer OPERA pretrained with COLA (`Cola(encoder="htsat")`).

Re-implemented without timm/torchlibrosa, key-compatible with OPERA's checkpoint (docs/protocol.md#opera-ct):
`encoder.encoder.htsat.*` for the network and the Cola heads `g`, `layer_norm`, `linear`.

Pipeline for a (B, T, 64) log-mel in [0, 1]:
  bn0 over the mel bins -> `reshape_wav2img` (bicubic time stretch to freq_ratio*spec_size = 1024
  frames, then 4 chunks of 256 frames stacked along frequency -> a 256x256 image) -> patch conv
  4x4/4 + LN -> four Swin-V1 stages (window 8, shift 4 on odd blocks, PatchMerging between) ->
  LN -> mean of the 64 final tokens = the 768-d latent. Clips longer than 1024 frames are cut:
  in eval into 1024-frame crops at hop 512 whose latents are averaged, in training into one
  random crop per clip.

Not built, because HTS-AT constructs but never uses them (the input is already a log-mel; the
latent is taken before the classifier): the torchlibrosa STFT/mel weights and the AudioSet
classification head (`tscam_conv`, `head`). Their checkpoint keys are listed as ignorable.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .base import InputContract
from .cola import ColaEncoder
from .registry import register

PRESETS: dict[str, dict[str, Any]] = {
    "base": {},  # the published model: constructor defaults below
    "tiny": {"embed_dim": 32, "depths": (2, 2, 2, 2), "num_heads": (1, 2, 4, 8), "dim_out": 64},
}

_PREFIX = "encoder.encoder.htsat."
# HTS-AT modules the published checkpoint holds but the latent never touches (fnmatch patterns)
UNUSED_KEYS = tuple(_PREFIX + k for k in ("spectrogram_extractor.*", "logmel_extractor.*", "tscam_conv.*", "head.*"))
# persistent Swin buffers: recomputed exactly at construction, so a checkpoint may lack them
RECOMPUTED_KEYS = tuple(_PREFIX + k for k in ("layers.*.attn_mask", "layers.*.attn.relative_position_index"))


def drop_path(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Stochastic depth per sample (HTS-AT's `drop_path`)."""
    if p == 0.0 or not training:
        return x
    keep = 1 - p
    mask = (keep + torch.rand((x.shape[0],) + (1,) * (x.ndim - 1), dtype=x.dtype, device=x.device)).floor_()
    return x.div(keep) * mask


def window_partition(x: torch.Tensor, w: int) -> torch.Tensor:
    """(B, H, W, C) -> (B*nW, w, w, C)."""
    B, H, W, C = x.shape
    x = x.view(B, H // w, w, W // w, w, C)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, w, w, C)


def window_reverse(windows: torch.Tensor, w: int, H: int, W: int) -> torch.Tensor:
    B = windows.shape[0] // ((H // w) * (W // w))
    x = windows.view(B, H // w, W // w, w, w, -1)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(B, H, W, -1)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class WindowAttention(nn.Module):
    """Swin-V1 window self-attention with a learned relative-position bias table."""

    def __init__(self, dim: int, window: int, num_heads: int):
        super().__init__()
        self.window = window
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, num_heads))
        coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
        rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window - 1)
        # persistent, as in HTS-AT, so the state dict matches OPERA's key for key
        self.register_buffer("relative_position_index", rel[:, :, 0] * (2 * window - 1) + rel[:, :, 1])
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        Bw, N, C = x.shape
        q, k, v = self.qkv(x).reshape(Bw, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
        attn = (q * self.scale) @ k.transpose(-2, -1)
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)].view(N, N, -1)
        attn = attn + bias.permute(2, 0, 1).unsqueeze(0)
        if mask is not None:
            nW = mask.shape[0]
            attn = (attn.view(Bw // nW, nW, self.num_heads, N, N) + mask[None, :, None]).view(-1, self.num_heads, N, N)
        x = (attn.softmax(dim=-1) @ v).transpose(1, 2).reshape(Bw, N, C)
        return self.proj(x)


def shift_mask(resolution: tuple[int, int], window: int, shift: int) -> torch.Tensor:
    """(nW, w*w, w*w) mask: -100 between tokens that the cyclic shift brought from different regions."""
    H, W = resolution
    img = torch.zeros(1, H, W, 1)
    cuts = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
    for i, (h, w) in enumerate((h, w) for h in cuts for w in cuts):
        img[:, h, w, :] = i
    win = window_partition(img, window).view(-1, window * window)
    diff = win[:, None, :] - win[:, :, None]
    return diff.masked_fill(diff != 0, -100.0).masked_fill(diff == 0, 0.0)


class SwinBlock(nn.Module):
    """Pre-norm Swin-V1 block; no windowing limit below the window size (HTS-AT rule)."""

    def __init__(self, dim: int, resolution: tuple[int, int], num_heads: int, window: int, shift: int,
                 mlp_ratio: float, drop_path: float):
        super().__init__()
        self.resolution = resolution
        if min(resolution) <= window:  # the window covers the whole map: no partition, no shift
            window, shift = min(resolution), 0
        self.window, self.shift = window, shift
        self.drop_path = drop_path
        if shift > 0:  # persistent and registered first, matching OPERA's key order
            self.register_buffer("attn_mask", shift_mask(resolution, window, shift))
        else:
            self.attn_mask = None
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        H, W = self.resolution
        B, L, C = x.shape
        w, s = self.window, self.shift
        h = self.norm1(x).view(B, H, W, C)
        if s:
            h = torch.roll(h, shifts=(-s, -s), dims=(1, 2))
        h = self.attn(window_partition(h, w).view(-1, w * w, C), self.attn_mask)
        h = window_reverse(h.view(-1, w, w, C), w, H, W)
        if s:
            h = torch.roll(h, shifts=(s, s), dims=(1, 2))
        x = x + drop_path(h.reshape(B, L, C), self.drop_path, self.training)
        return x + drop_path(self.mlp(self.norm2(x)), self.drop_path, self.training)


class PatchMerging(nn.Module):
    """2x2 neighbourhood concat (order x00, x10, x01, x11) -> LN(4C) -> Linear(4C, 2C)."""

    def __init__(self, resolution: tuple[int, int], dim: int):
        super().__init__()
        self.resolution = resolution
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        H, W = self.resolution
        B, _, C = x.shape
        x = x.view(B, H, W, C)
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], -1)
        return self.reduction(self.norm(x.view(B, -1, 4 * C)))


class SwinStage(nn.Module):
    def __init__(self, dim: int, resolution: tuple[int, int], depth: int, num_heads: int, window: int,
                 mlp_ratio: float, drop_paths: list[float], downsample: bool):
        super().__init__()
        self.blocks = nn.ModuleList(
            SwinBlock(dim, resolution, num_heads, window, 0 if i % 2 == 0 else window // 2, mlp_ratio, drop_paths[i])
            for i in range(depth)
        )
        self.downsample = PatchMerging(resolution, dim) if downsample else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for blk in self.blocks:
            x = blk(x)
        return self.downsample(x) if self.downsample is not None else x


class PatchEmbed(nn.Module):
    def __init__(self, patch_size: int, patch_stride: int, in_chans: int, embed_dim: int):
        super().__init__()
        pad = (patch_size - patch_stride) // 2
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_stride, padding=pad)
        self.norm = nn.LayerNorm(embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(x).flatten(2).transpose(1, 2))


class HTSAT(nn.Module):
    """HTS-AT up to its latent output: (B, 1, T, mel_bins) -> (B, embed_dim * 2**(stages-1))."""

    def __init__(self, spec_size: int = 256, patch_size: int = 4, patch_stride: int = 4, in_chans: int = 1,
                 embed_dim: int = 96, depths: tuple[int, ...] = (2, 2, 6, 2),
                 num_heads: tuple[int, ...] = (4, 8, 16, 32), window_size: int = 8, mlp_ratio: float = 4.0,
                 drop_path_rate: float = 0.1, mel_bins: int = 64):
        super().__init__()
        if spec_size % mel_bins:
            raise ValueError(f"HTS-AT: spec_size {spec_size} must be a multiple of mel_bins {mel_bins}")
        if len(depths) != len(num_heads):
            raise ValueError(f"HTS-AT: depths {depths} and num_heads {num_heads} differ in length")
        self.spec_size, self.mel_bins = spec_size, mel_bins
        self.freq_ratio = spec_size // mel_bins
        self.crop_frames = self.freq_ratio * spec_size  # 1024: the longest clip one image holds
        self.num_features = embed_dim * 2 ** (len(depths) - 1)

        self.bn0 = nn.BatchNorm2d(mel_bins)
        self.patch_embed = PatchEmbed(patch_size, patch_stride, in_chans, embed_dim)
        grid = spec_size // patch_stride
        dpr = torch.linspace(0, drop_path_rate, sum(depths)).tolist()
        self.layers = nn.ModuleList()
        for i, (depth, heads) in enumerate(zip(depths, num_heads)):
            res = (grid // 2**i, grid // 2**i)
            self.layers.append(SwinStage(embed_dim * 2**i, res, depth, heads, window_size, mlp_ratio,
                                         dpr[sum(depths[:i]): sum(depths[: i + 1])], downsample=i < len(depths) - 1))
        self.norm = nn.LayerNorm(self.num_features)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    def reshape_wav2img(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, T<=1024, F) -> (B, 1, spec_size, spec_size): stretch time, stack 4 time chunks along freq."""
        B, C, T, Fb = x.shape
        target_t, target_f = self.crop_frames, self.spec_size // self.freq_ratio
        if T > target_t or Fb > target_f:
            raise ValueError(f"HTS-AT image holds at most ({target_t}, {target_f}) frames x bins, got ({T}, {Fb})")
        if T < target_t:
            x = F.interpolate(x, (target_t, Fb), mode="bicubic", align_corners=True)
        if Fb < target_f:
            x = F.interpolate(x, (x.shape[2], target_f), mode="bicubic", align_corners=True)
        x = x.permute(0, 1, 3, 2).reshape(B, C, target_f, self.freq_ratio, target_t // self.freq_ratio)
        return x.permute(0, 1, 3, 2, 4).reshape(B, C, self.freq_ratio * target_f, target_t // self.freq_ratio)

    def forward_features(self, img: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(img)
        for layer in self.layers:
            x = layer(x)
        return self.norm(x).mean(dim=1)  # HTS-AT's latent_output: average of all final tokens

    def crop_starts(self, frames: int) -> list[int]:
        """OPERA's eval crops: starts range(0, T-1024-1, 512). At T=1025 that range is empty and
        OPERA crashes; we use the single crop at 0 instead."""
        return list(range(0, frames - self.crop_frames - 1, self.crop_frames // 2)) or [0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 1, T, F)
        x = self.bn0(x.transpose(1, 3)).transpose(1, 3)
        T = x.shape[2]
        if T <= self.crop_frames:
            return self.forward_features(self.reshape_wav2img(x))
        n = self.crop_frames
        if self.training:  # one random crop per clip, start uniform in [0, T-1024-1] as OPERA
            starts = torch.randint(0, T - n, (x.shape[0],), device=x.device)
            idx = starts[:, None] + torch.arange(n, device=x.device)
            crop = torch.gather(x, 2, idx[:, None, :, None].expand(-1, x.shape[1], -1, x.shape[3]))
            return self.forward_features(self.reshape_wav2img(crop))
        latents = [self.forward_features(self.reshape_wav2img(x[:, :, s: s + n])) for s in self.crop_starts(T)]
        return torch.stack(latents).mean(dim=0)


class _Nest(nn.Module):
    """Holds one child under a fixed name, only to reproduce OPERA's key prefix `encoder.encoder.htsat`."""

    def __init__(self, name: str, child: nn.Module):
        super().__init__()
        self.add_module(name, child)


class OperaCT(ColaEncoder):
    """`Cola(encoder="htsat")`: HTS-AT latent (768) plus the COLA projection heads (g, layer_norm, linear)."""

    name = "opera-ct"

    def __init__(self, spec_size: int = 256, patch_size: int = 4, patch_stride: int = 4, embed_dim: int = 96,
                 depths: tuple[int, ...] = (2, 2, 6, 2), num_heads: tuple[int, ...] = (4, 8, 16, 32),
                 window_size: int = 8, mlp_ratio: float = 4.0, drop_path_rate: float = 0.1, mel_bins: int = 64,
                 dim_out: int = 512, mam_patch: tuple[int, int] = (8, 8), mam_ratio: float = 0.7,
                 window_policy: str = "opera"):
        super().__init__()
        htsat = HTSAT(spec_size, patch_size, patch_stride, 1, embed_dim, tuple(depths), tuple(num_heads),
                      window_size, mlp_ratio, drop_path_rate, mel_bins)
        self.encoder = _Nest("encoder", _Nest("htsat", htsat))
        self.feature_dim = htsat.num_features
        self._add_cola_heads(dim_out, mel_bins, mam_patch, mam_ratio)
        # OPERA's downstream policy: the whole (trimmed) recording in one pass; any length works
        # (stretched up to 1024 frames, cropped beyond). 2 frames: bicubic needs two to interpolate.
        self.contract = InputContract(frontend="logmel", n_mels=mel_bins, min_frames=2, max_frames=None,
                                      frames=256, window_policy=window_policy)
        self.ignorable_missing = ("mam_head.*", *RECOMPUTED_KEYS)  # the MAM head is acula's own
        self.ignorable_unexpected = UNUSED_KEYS

    @property
    def htsat(self) -> HTSAT:
        return self.encoder.encoder.htsat

    def latent(self, x: torch.Tensor) -> torch.Tensor:
        return self.htsat(x.unsqueeze(1))


@register("opera-ct")
def opera_ct(preset: str = "base", **overrides: Any) -> OperaCT:
    """OPERA-CT; `preset` "base" is the published model (loads OPERA's checkpoint), "tiny" a CPU demo."""
    if preset not in PRESETS:
        raise ValueError(f"opera-ct: unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
    return OperaCT(**{**PRESETS[preset], **overrides})
