"""OPERA-CE: the EfficientNet-B0 OPERA pretrained with COLA (`Cola(encoder="efficientnet")`).

Re-implemented without efficientnet_pytorch, key-compatible with OPERA's checkpoint (docs/protocol.md#opera-ce):
`encoder.cnn1` Conv2d(1->3, k3, no padding) feeding `encoder.efficientnet` =
`EfficientNet.from_name("efficientnet-b0", include_top=False, drop_connect_rate=0.1)` of
efficientnet_pytorch 0.7.1, then global average pooling -> (B, 1280); Cola heads `g`,
`layer_norm`, `linear` unprefixed.

Two details of efficientnet_pytorch 0.7.1 decide whether the numbers match:

- **Padding is static, not dynamic.** `from_name` fills `image_size` from the B0 defaults (224),
  so every conv is a `Conv2dStaticSamePadding` whose TF-"same" padding is computed once for the
  nominal 224x224 image (and the resolution it implies at each stage), whatever the real input.
  For the 3x3/stride-2 convs that is (left 0, right 1), for 5x5/stride-2 (1, 2), for stride 1
  symmetric k//2. On a log-mel the real sizes are odd at several stride-2 convs (64 bins -> 62
  after cnn1 -> 31 after the stem), where dynamic padding would pad differently and change both
  the values and the output size. `image_size=None` gives the dynamic variant for comparison.
- **Residuals skip the first block of every stage.** The decoded `stride` of a stage's first
  block is a list (`[1]`), and the skip test is `stride == 1`, so only the repeated blocks get the
  identity shortcut (and drop connect). In B0 the first blocks change width anyway; it matters
  only for narrowed variants such as the tiny preset.

BatchNorm: PyTorch momentum 0.01 (= 1 - TF's 0.99), eps 1e-3. Swish = x * sigmoid(x).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .base import InputContract
from .cola import ColaEncoder
from .registry import register

B0_BLOCKS = (
    "r1_k3_s11_e1_i32_o16_se0.25", "r2_k3_s22_e6_i16_o24_se0.25", "r2_k5_s22_e6_i24_o40_se0.25",
    "r3_k3_s22_e6_i40_o80_se0.25", "r3_k5_s11_e6_i80_o112_se0.25", "r4_k5_s22_e6_i112_o192_se0.25",
    "r1_k3_s11_e6_i192_o320_se0.25",
)

PRESETS: dict[str, dict[str, Any]] = {
    "base": {},  # published B0
    "tiny": {"width": 0.25, "depth": 0.5, "dim_out": 64},
}


@dataclass(frozen=True)
class BlockArgs:
    repeats: int
    kernel: int
    stride: int
    expand: int
    c_in: int
    c_out: int
    se_ratio: float | None

    @classmethod
    def parse(cls, s: str) -> "BlockArgs":
        """efficientnet_pytorch block string, e.g. "r2_k3_s22_e6_i16_o24_se0.25"."""
        o = {}
        for op in s.split("_"):
            i = next((j for j, ch in enumerate(op) if ch.isdigit()), len(op))
            o[op[:i]] = op[i:]
        if len(set(o["s"])) != 1:
            raise ValueError(f"block {s!r}: only equal strides are supported")
        return cls(int(o["r"]), int(o["k"]), int(o["s"][0]), int(o["e"]), int(o["i"]), int(o["o"]),
                   float(o["se"]) if "se" in o else None)


def round_filters(filters: int, width: float, divisor: int = 8) -> int:
    """efficientnet_pytorch's channel rounding for a width multiplier."""
    if not width:
        return filters
    f = filters * width
    new = max(divisor, int(f + divisor / 2) // divisor * divisor)
    return int(new + divisor if new < 0.9 * f else new)


def round_repeats(repeats: int, depth: float) -> int:
    return repeats if not depth else int(math.ceil(depth * repeats))


def same_pad(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TF "same" padding (before, after) of one axis of length `size`."""
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class SameConv2d(nn.Conv2d):
    """Conv2d with TF-"same" padding: fixed from a nominal `image_size` (0.7.1's static variant), or
    recomputed from each input when `image_size` is None (the dynamic variant)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1, groups: int = 1, bias: bool = False,
                 image_size: tuple[int, int] | None = None):
        super().__init__(c_in, c_out, kernel, stride, padding=0, groups=groups, bias=bias)
        self.static_pad = None
        if image_size is not None:
            (t, b), (l, r) = (same_pad(n, kernel, stride) for n in image_size)
            self.static_pad = (l, r, t, b)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pad = self.static_pad
        if pad is None:
            k, s = self.kernel_size[0], self.stride[0]
            (t, b), (l, r) = (same_pad(n, k, s) for n in x.shape[-2:])
            pad = (l, r, t, b)
        if any(pad):
            x = F.pad(x, pad)
        return super().forward(x)

    def out_size(self, n: int) -> int:
        """Output length of one axis for input length n (static padding); 0 if the conv cannot run."""
        pad = sum(self.static_pad[:2]) if self.static_pad else sum(same_pad(n, self.kernel_size[0], self.stride[0]))
        return max((n + pad - self.kernel_size[0]) // self.stride[0] + 1, 0) if n > 0 else 0


def _bn(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, momentum=0.01, eps=1e-3)


def _stride_out(size: tuple[int, int] | None, stride: int) -> tuple[int, int] | None:
    return None if size is None else (math.ceil(size[0] / stride), math.ceil(size[1] / stride))


class MBConv(nn.Module):
    """Inverted bottleneck: [1x1 expand] -> depthwise kxk -> squeeze-excite -> 1x1 project [+ skip]."""

    def __init__(self, a: BlockArgs, image_size: tuple[int, int] | None, skip: bool):
        super().__init__()
        mid = a.c_in * a.expand
        self.expand = a.expand != 1
        if self.expand:
            self._expand_conv = SameConv2d(a.c_in, mid, 1, image_size=image_size)
            self._bn0 = _bn(mid)
        self._depthwise_conv = SameConv2d(mid, mid, a.kernel, a.stride, groups=mid, image_size=image_size)
        self._bn1 = _bn(mid)
        self.has_se = a.se_ratio is not None and 0 < a.se_ratio <= 1
        if self.has_se:
            squeezed = max(1, int(a.c_in * a.se_ratio))
            self._se_reduce = nn.Conv2d(mid, squeezed, 1)
            self._se_expand = nn.Conv2d(squeezed, mid, 1)
        self._project_conv = SameConv2d(mid, a.c_out, 1, image_size=_stride_out(image_size, a.stride))
        self._bn2 = _bn(a.c_out)
        self.skip = skip and a.c_in == a.c_out

    def forward(self, inputs: torch.Tensor, drop_connect: float = 0.0) -> torch.Tensor:
        x = inputs
        if self.expand:
            x = F.silu(self._bn0(self._expand_conv(x)))
        x = F.silu(self._bn1(self._depthwise_conv(x)))
        if self.has_se:
            s = self._se_expand(F.silu(self._se_reduce(F.adaptive_avg_pool2d(x, 1))))
            x = torch.sigmoid(s) * x
        x = self._bn2(self._project_conv(x))
        if not self.skip:
            return x
        if drop_connect and self.training:  # per-sample stochastic depth
            keep = 1 - drop_connect
            mask = (keep + torch.rand(x.shape[0], 1, 1, 1, dtype=x.dtype, device=x.device)).floor()
            x = x / keep * mask
        return x + inputs


class EfficientNet(nn.Module):
    """efficientnet_pytorch 0.7.1 `EfficientNet` without the classifier: (B, 3, H, W) -> (B, C_head)."""

    def __init__(self, blocks: tuple[str, ...] = B0_BLOCKS, width: float = 1.0, depth: float = 1.0,
                 image_size: int | None = 224, drop_connect_rate: float = 0.1, in_channels: int = 3,
                 head_channels: int = 1280):
        super().__init__()
        size = None if image_size is None else (image_size, image_size)
        stem = round_filters(32, width)
        self._conv_stem = SameConv2d(in_channels, stem, 3, 2, image_size=size)
        self._bn0 = _bn(stem)
        size = _stride_out(size, 2)
        self._blocks = nn.ModuleList()
        for a in map(BlockArgs.parse, blocks):
            a = BlockArgs(round_repeats(a.repeats, depth), a.kernel, a.stride, a.expand,
                          round_filters(a.c_in, width), round_filters(a.c_out, width), a.se_ratio)
            for i in range(a.repeats):
                if i == 0:  # stage entry: stride and width change; 0.7.1 never adds a residual here
                    self._blocks.append(MBConv(a, size, skip=False))
                    size = _stride_out(size, a.stride)
                else:
                    self._blocks.append(MBConv(BlockArgs(1, a.kernel, 1, a.expand, a.c_out, a.c_out, a.se_ratio),
                                               size, skip=True))
        self.out_channels = round_filters(head_channels, width)
        self._conv_head = SameConv2d(a.c_out, self.out_channels, 1, image_size=size)
        self._bn1 = _bn(self.out_channels)
        self.drop_connect_rate = drop_connect_rate

    def convs_along_axis(self) -> list[SameConv2d]:
        """Every conv that changes a spatial size, in order (for the shortest-input computation)."""
        convs = [self._conv_stem]
        for b in self._blocks:
            convs.append(b._depthwise_conv)
        return convs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.silu(self._bn0(self._conv_stem(x)))
        n = len(self._blocks)
        for idx, block in enumerate(self._blocks):
            x = block(x, self.drop_connect_rate * idx / n)
        x = F.silu(self._bn1(self._conv_head(x)))
        return F.adaptive_avg_pool2d(x, 1).flatten(1)


class _CNNEncoder(nn.Module):
    """OPERA's `Encoder`: cnn1 (1->3 channels, 3x3 valid) then EfficientNet; names match its keys."""

    def __init__(self, **effnet: Any):
        super().__init__()
        self.cnn1 = nn.Conv2d(1, 3, kernel_size=3)
        self.efficientnet = EfficientNet(**effnet)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, F)
        return self.efficientnet(self.cnn1(x.unsqueeze(1)))

    def min_frames(self, n_mels: int) -> int:
        """Shortest T for which every conv still has input, along time and frequency."""
        def survives(n: int) -> bool:
            n -= self.cnn1.kernel_size[0] - 1
            for conv in self.efficientnet.convs_along_axis():
                if n < 1 or conv.out_size(n) < 1:
                    return False
                n = conv.out_size(n)
            return True

        if not survives(n_mels):
            raise ValueError(f"EfficientNet: {n_mels} mel bins are too few for its strides")
        return next(t for t in range(1, 10_000) if survives(t))


class OperaCE(ColaEncoder):
    """`Cola(encoder="efficientnet")`: EfficientNet-B0 pooled feature (1280) plus COLA heads."""

    name = "opera-ce"

    def __init__(self, width: float = 1.0, depth: float = 1.0, image_size: int | None = 224,
                 drop_connect_rate: float = 0.1, n_mels: int = 64, dim_out: int = 512,
                 mam_patch: tuple[int, int] = (8, 8), mam_ratio: float = 0.7, window_policy: str = "opera"):
        super().__init__()
        self.encoder = _CNNEncoder(width=width, depth=depth, image_size=image_size, drop_connect_rate=drop_connect_rate)
        self.feature_dim = self.encoder.efficientnet.out_channels
        self._add_cola_heads(dim_out, n_mels, mam_patch, mam_ratio)
        # OPERA's downstream policy: the whole (trimmed) recording in one pass, any length that
        # survives the strides. Computed from the network: 34 frames (~1.06 s) for B0 with the
        # static padding, so OPERA's own 1-s minimum clips (32 frames) are too short for it.
        self.contract = InputContract(frontend="logmel", n_mels=n_mels, min_frames=self.encoder.min_frames(n_mels),
                                      max_frames=None, frames=256, window_policy=window_policy)
        self.ignorable_missing = ("mam_head.*",)  # acula's own MAM head; not in OPERA checkpoints
        self.ignorable_unexpected = ()

    def latent(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)


@register("opera-ce")
def opera_ce(preset: str = "base", **overrides: Any) -> OperaCE:
    """OPERA-CE; `preset` "base" is the published B0 (loads OPERA's checkpoint), "tiny" a CPU demo."""
    if preset not in PRESETS:
        raise ValueError(f"opera-ce: unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
    return OperaCE(**{**PRESETS[preset], **overrides})
