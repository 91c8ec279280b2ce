"""HEAR-style embedding API (hearbenchmark.com) over any registered encoder and checkpoint.

    model = acula.load_model("opera-gt", "encoder-operaGT.ckpt")
    scene = acula.get_scene_embeddings(audio, model)            # (n_sounds, model.scene_embedding_size)
    emb, ts = acula.get_timestamp_embeddings(audio, model)      # (n_sounds, n_frames, D), (n_sounds, n_frames) ms

`audio` is a float tensor (n_sounds, n_samples) at `model.sample_rate`, of any length. Timestamp
embeddings come from windows of the encoder's nominal length with 50 % overlap (`InputSpec` policy
"cover"), stamped at their centres; the scene embedding is their mean, the same aggregation OPERA uses
for GT.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .audio.spec import InputSpec, cover_windows, front_end
from .encoders import create
from .encoders.base import AudioEncoder
from .encoders.registry import ALIASES
from .features import encode_windows, feature_forward


class HearModel(nn.Module):
    def __init__(self, encoder: AudioEncoder):
        super().__init__()
        self.encoder = encoder.eval()
        self.sample_rate = encoder.contract.sample_rate
        self.scene_embedding_size = encoder.feature_dim
        self.timestamp_embedding_size = encoder.feature_dim
        self.window = InputSpec("cover", encoder.contract.window_seconds).window_samples(encoder.contract)
        self.hop = self.window // 2


def load_model(encoder: str = "opera-gt", checkpoint: str | None = None, **options) -> HearModel:
    return HearModel(create(encoder, checkpoint=checkpoint, **options))


@torch.inference_mode()
def get_timestamp_embeddings(audio: torch.Tensor, model: HearModel) -> tuple[torch.Tensor, torch.Tensor]:
    audio = torch.as_tensor(audio, dtype=torch.float32)
    if audio.ndim != 2:
        raise ValueError(f"audio must be (n_sounds, n_samples), got {tuple(audio.shape)}")
    enc = model.encoder
    out, stamps = [], []
    for wave in audio.cpu().numpy():
        if not np.isfinite(wave).all():
            raise ValueError("audio contains NaN or Inf samples")
        wins, centres = cover_windows(wave, model.window)
        out.append(encode_windows(feature_forward(enc, to_cpu=False), front_end(wins, enc.contract)))
        stamps.append(torch.from_numpy(1000.0 * centres / model.sample_rate).float())
    n = max(len(s) for s in stamps)  # equal-length sounds give equal counts; pad otherwise by repeating the last
    emb = torch.stack([torch.cat([e, e[-1:].expand(n - len(e), -1)]) for e in out])
    ts = torch.stack([torch.cat([s, s[-1:].expand(n - len(s))]) for s in stamps])
    return emb, ts


def get_scene_embeddings(audio: torch.Tensor, model: HearModel) -> torch.Tensor:
    emb, _ = get_timestamp_embeddings(audio, model)
    return emb.mean(dim=1)


def initialize_pretrained_model(name: str = "operaGT", checkpoint: str | None = None, **options) -> AudioEncoder:
    """The model card's `initialize_pretrained_model("operaGT" | "operaCT" | "operaCE")`, then `.forward_feature(x)`.

    Without a checkpoint the network is randomly initialised (the published weights cannot be fetched
    offline); pass `checkpoint="hf://evelyn0414/OPERA/encoder-operaGT.ckpt"` or a local file.
    """
    if name not in ALIASES:
        raise ValueError(f"unknown pretrained model {name!r}; choose from {', '.join(ALIASES)}")
    return create(ALIASES[name], checkpoint=checkpoint, **options).eval()
