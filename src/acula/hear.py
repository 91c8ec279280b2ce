"""HEAR-style embedding API (hearbenchmark.com) over any registered encoder and checkpoint.

    model = acula.load_model("opera-gt", "encoder-operaGT.ckpt")
    scene = acula.get_scene_embeddings(audio, model)            # (n_sounds, model.scene_embedding_size)
    emb, ts = acula.get_timestamp_embeddings(audio, model)      # (n_sounds, n_frames, D), (n_sounds, n_frames) ms

`audio` is a float tensor (n_sounds, n_samples) at `model.sample_rate`, of any length. Timestamp
embeddings come from windows of the encoder's nominal length with 50 % overlap, stamped at their
centres; the scene embedding is their mean, the same aggregation OPERA uses for GT.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .audio import frontend
from .encoders import create
from .encoders.base import AudioEncoder


class HearModel(nn.Module):
    def __init__(self, encoder: AudioEncoder):
        super().__init__()
        self.encoder = encoder.eval()
        self.sample_rate = encoder.contract.sample_rate
        self.scene_embedding_size = encoder.feature_dim
        self.timestamp_embedding_size = encoder.feature_dim
        self.window = int(round(encoder.contract.window_seconds * self.sample_rate))
        self.hop = self.window // 2


def load_model(encoder: str = "opera-gt", checkpoint: str | None = None, **options) -> HearModel:
    return HearModel(create(encoder, checkpoint=checkpoint, **options))


def _windows(wave: np.ndarray, window: int, hop: int) -> tuple[np.ndarray, np.ndarray]:
    """Windows covering the whole clip (the last zero-padded) and their centre times in samples."""
    n = len(wave)
    starts = np.arange(0, max(1, n - window + hop), hop) if n > window else np.array([0])
    padded = np.zeros(starts[-1] + window, dtype=np.float32)
    padded[:n] = wave
    wins = np.stack([padded[s:s + window] for s in starts])
    return wins, starts + window / 2


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
        wins, centres = _windows(wave, model.window, model.hop)
        x = torch.from_numpy(wins)
        if enc.contract.frontend == "logmel":
            x = frontend.logmel(x, sample_rate=model.sample_rate)
        out.append(enc.forward_feature(x).float())
        stamps.append(torch.from_numpy(1000.0 * centres / model.sample_rate).float())
    n = max(len(s) for s in stamps)  # equal-length sounds give equal counts; pad otherwise by repeating the last
    emb = torch.stack([torch.cat([e, e[-1:].expand(n - len(e), -1)]) for e in out])
    ts = torch.stack([torch.cat([s, s[-1:].expand(n - len(s))]) for s in stamps])
    return emb, ts


def get_scene_embeddings(audio: torch.Tensor, model: HearModel) -> torch.Tensor:
    emb, _ = get_timestamp_embeddings(audio, model)
    return emb.mean(dim=1)


_MODEL_CARD_NAMES = {"operaGT": "opera-gt", "operaCT": "opera-ct", "operaCE": "opera-ce"}


def initialize_pretrained_model(name: str = "operaGT", checkpoint: str | None = None, **options) -> AudioEncoder:
    """The model card's `initialize_pretrained_model("operaGT" | "operaCT" | "operaCE")`, then `.forward_feature(x)`.

    Without a checkpoint the network is randomly initialised (the published weights cannot be fetched
    offline); pass `checkpoint="hf://evelyn0414/OPERA/encoder-operaGT.ckpt"` or a local file.
    """
    if name not in _MODEL_CARD_NAMES:
        raise ValueError(f"unknown pretrained model {name!r}; choose from {', '.join(_MODEL_CARD_NAMES)}")
    return create(_MODEL_CARD_NAMES[name], checkpoint=checkpoint, **options).eval()
