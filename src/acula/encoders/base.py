"""The one interface every audio encoder implements.

Extraction, alignment and probing only talk to this interface, so a new network needs no change
anywhere else. Each encoder declares its input contract; the pipeline reads it instead of
assuming OPERA's 16 kHz / 64-band / 256-frame defaults.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn


@dataclass(frozen=True)
class InputContract:
    """What an encoder expects. `frontend` names the feature extractor in `acula.audio`."""

    sample_rate: int = 16000
    frontend: str = "logmel"  # "logmel" (docs/protocol.md#front-end, (B,T,n_mels)) | "waveform" (B,N) raw 16 kHz
    n_mels: int = 64
    window_seconds: float = 131000 / 16000  # 8.1875 s -> 256 frames
    min_frames: int = 4  # shortest (B,T,n_mels) input forward_feature accepts
    max_frames: int | None = 256  # longest; None = any
    frames: int = 256  # nominal training length
    window_policy: str = "acula"  # default policy for extraction: "acula" | "opera"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def check(self, x: torch.Tensor, who: str = "encoder") -> None:
        """Name the expected and actual shape instead of failing deep inside a conv (also for a feature cache,
        which has a contract and no network)."""
        if self.frontend == "logmel":
            if x.ndim != 3 or x.shape[-1] != self.n_mels:
                raise ValueError(
                    f"{who}: expected log-mel of shape (batch, frames, {self.n_mels}), got {tuple(x.shape)}"
                )
            if x.shape[1] < self.min_frames:
                raise ValueError(f"{who}: needs at least {self.min_frames} frames, got {x.shape[1]}")
            if self.max_frames is not None and x.shape[1] > self.max_frames:
                raise ValueError(f"{who}: accepts at most {self.max_frames} frames, got {x.shape[1]}")
        elif x.ndim != 2:
            raise ValueError(f"{who}: expected waveforms of shape (batch, samples), got {tuple(x.shape)}")


class AudioEncoder(nn.Module):
    """Base class. Subclasses set `feature_dim` and `contract`, implement `forward_feature`.

    `forward_mam(x, noise=None) -> (loss, pred, mask)` is the masked-audio-modelling regulariser
    used by alignment; encoders without a native decoder provide a reconstruction head.
    """

    name: str = "encoder"
    feature_dim: int
    contract: InputContract = InputContract()
    # keys the checkpoint loader may find missing or unexpected without error, because the model
    # recomputes them deterministically or never uses them (listed in the load report)
    ignorable_missing: tuple[str, ...] = ()
    ignorable_unexpected: tuple[str, ...] = ()
    # prefixes of the masked-modelling decoder/head: a checkpoint without them can still feed features
    decoder_prefixes: tuple[str, ...] = ()
    config: dict[str, Any] = {}  # constructor arguments, set by the registry; saved with checkpoints

    def check_input(self, x: torch.Tensor) -> None:
        self.contract.check(x, self.name)

    def forward_feature(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, n_mels) -> (B, D)
        raise NotImplementedError

    def forward_mam(
        self, x: torch.Tensor, noise: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        raise NotImplementedError(f"{self.name} has no masked-audio-modelling head")

    # True where `forward_mam_feature` pools the visible tokens of the masked pass (one encoder pass per step)
    masks_tokens: bool = False

    def forward_mam_feature(
        self, x: torch.Tensor, noise: torch.Tensor | None = None, decode: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(MAM loss or 0, pooled features of the visible tokens) from one masked pass (FLIP, Li et al. 2023):
        alignment then costs no second, unmasked encoder pass. `decode=False` skips the decoder (no MAM term)."""
        raise NotImplementedError(f"{self.name} drops no tokens when masking: align on full features")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_feature(x)
