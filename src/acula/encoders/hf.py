"""Hugging Face audio towers (AST, CLAP-audio) behind the `AudioEncoder` interface.

Each tower keeps its own feature extractor (AST: Kaldi-style 128-band fbank at 16 kHz, normalised;
CLAP: 64-band log-mel at 48 kHz), so the contract is raw waveforms at the extractor's rate and
nothing in acula has to imitate their front ends. The extractors run in numpy on the CPU: the
waveform gets no gradient, the tower's parameters do.

Determinism: CLAP's extractor picks random crops for clips longer than its window and flags a
random clip as "longer" when none is; we crop to the first window ourselves and pass
`is_longer=False`, so a clip's feature does not depend on chance or on its batch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from .base import AudioEncoder, InputContract
from .registry import register
from .yamnet import MaskedTileHead, masked_tile_loss


class HFAudioEncoder(AudioEncoder):
    """A `transformers` audio model + its feature extractor; `kind` is "ast" or "clap"."""

    def __init__(
        self,
        model: torch.nn.Module,
        extractor: Any,
        kind: str,
        use_projection: bool = True,
        mam_mask_ratio: float = 0.5,
        mam_tile: tuple[int, int] = (16, 16),
        mam_hidden: int = 256,
    ):
        super().__init__()
        if kind not in ("ast", "clap"):
            raise ValueError(f"HFAudioEncoder: kind must be 'ast' or 'clap', got {kind!r}")
        self.kind, self.model, self.extractor = kind, model, extractor
        cfg = model.config
        if kind == "ast":
            self.feature_dim = cfg.hidden_size  # pooler_output = mean of the CLS and distillation tokens
            self.spec_shape = (extractor.max_length, extractor.num_mel_bins)
            tower_seconds = extractor.max_length * 0.01  # Kaldi fbank frames are 10 ms apart
        else:
            self.use_projection = use_projection
            self.feature_dim = cfg.projection_dim if use_projection else cfg.hidden_size
            self.max_samples = int(extractor.nb_max_samples)
            self.spec_shape = (self.max_samples // extractor.hop_length + 1, extractor.feature_size)
            tower_seconds = self.max_samples / extractor.sampling_rate
        # extraction windows no longer than what the tower sees (it truncates the rest)
        self.contract = InputContract(
            sample_rate=int(extractor.sampling_rate),
            frontend="waveform",
            n_mels=self.spec_shape[1],
            window_seconds=min(InputContract.window_seconds, tower_seconds),
            max_frames=None,
        )
        self.mam_mask_ratio = mam_mask_ratio
        self.mam_tile = tuple(mam_tile)
        n_tiles = (self.spec_shape[0] // self.mam_tile[0]) * (self.spec_shape[1] // self.mam_tile[1])
        if n_tiles < 2:
            raise ValueError(f"{kind}: MAM tile {self.mam_tile} is too large for features of shape {self.spec_shape}")
        self.mam_head = MaskedTileHead(self.feature_dim, n_tiles, self.mam_tile[0] * self.mam_tile[1], mam_hidden)
        self.ignorable_missing = tuple(f"mam_head.{k}" for k in self.mam_head.state_dict())
        self.decoder_prefixes = ("mam_head.",)

    # -- front end (the model's own feature extractor) --

    def features(self, wave: torch.Tensor) -> torch.Tensor:
        """(B, N) waveforms -> the extractor's model input: AST (B, T, F); CLAP (B, C, T, F)."""
        self.check_input(wave)
        clips = list(wave.detach().float().cpu().numpy().astype(np.float64))
        sr = self.contract.sample_rate
        if self.kind == "ast":
            out = self.extractor(clips, sampling_rate=sr, return_tensors="pt")["input_values"]
        else:
            truncation = "fusion" if getattr(self.model.config, "enable_fusion", False) else "rand_trunc"
            clips = [c[: self.max_samples] for c in clips]  # first window; no random crop
            out = self.extractor(clips, sampling_rate=sr, truncation=truncation, return_tensors="pt")["input_features"]
        param = next(self.model.parameters())
        return out.to(device=param.device, dtype=param.dtype)

    def encode(self, feats: torch.Tensor) -> torch.Tensor:
        """Extractor output -> (B, feature_dim)."""
        if self.kind == "ast":
            return self.model(input_values=feats).pooler_output
        is_longer = torch.zeros(feats.shape[0], 1, dtype=torch.bool, device=feats.device)
        pooled = self.model.audio_model(input_features=feats, is_longer=is_longer).pooler_output
        return self.model.audio_projection(pooled) if self.use_projection else pooled

    def forward_feature(self, wave: torch.Tensor) -> torch.Tensor:
        return self.encode(self.features(wave))

    # -- masked-audio modelling on the extractor's spectrogram --

    def forward_mam(
        self, wave: torch.Tensor, noise: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Mask random tiles of the tower's input spectrogram and reconstruct them from the pooled feature.

        Returns (loss, pred (B, L, t*f) in standardised units, mask (B, L), 1 = masked); `noise` (B, L).
        """
        feats = self.features(wave)
        if self.kind == "ast":
            spec, encode = feats, self.encode
        else:  # without fusion of long clips all C channels are copies of one log-mel
            channels = feats.shape[1]
            spec = feats[:, 0]

            def encode(x: torch.Tensor) -> torch.Tensor:
                return self.encode(x[:, None].expand(-1, channels, -1, -1))

        return masked_tile_loss(spec, encode, self.mam_head, self.mam_tile, self.mam_mask_ratio, noise)


def _load(name: str, model: str | None, trust_remote_code: bool, local_files_only: bool):
    """(resolved path or hub id, config, feature extractor); a missing model names what to do."""
    from transformers import AutoConfig, AutoFeatureExtractor

    if not model:
        raise ValueError(f"{name} needs model=<local directory or Hugging Face hub id>")
    if str(model).startswith(("/", ".", "~")):
        if not Path(model).expanduser().is_dir():
            raise FileNotFoundError(f"{name}: model directory not found: {model}")
        model = str(Path(model).expanduser())
    kw = {"trust_remote_code": trust_remote_code, "local_files_only": local_files_only}
    try:
        config = AutoConfig.from_pretrained(model, **kw)
        extractor = AutoFeatureExtractor.from_pretrained(model, **kw)
    except (OSError, ValueError) as e:
        raise OSError(
            f"{name}: could not load {model!r}: it is not a local model directory with config.json and "
            f"preprocessor_config.json, and it could not be fetched from the Hugging Face hub (offline, or no "
            f"such repository). Download it first (huggingface-cli download {model}) or pass a local path. "
            f"Cause: {e}"
        ) from e
    return model, config, extractor


def _weights(cls: Any, name: str, model: str, config: Any, local_files_only: bool) -> torch.nn.Module:
    """`cls.from_pretrained`, but a weight the checkpoint lacks is an error, not a random init."""
    net, info = cls.from_pretrained(model, config=config, local_files_only=local_files_only, output_loading_info=True)
    if info["missing_keys"]:
        missing = sorted(info["missing_keys"])
        raise ValueError(f"{name}: {model!r} lacks {len(missing)} weights of {cls.__name__}, e.g. {missing[:5]}")
    return net


@register("hf-ast")
def create_hf_ast(
    model: str | None = None,
    trust_remote_code: bool = False,
    local_files_only: bool = False,
    mam_mask_ratio: float = 0.5,
) -> HFAudioEncoder:
    """Audio Spectrogram Transformer (`ASTModel`) on 16 kHz waveforms; feature = pooler output."""
    from transformers import ASTFeatureExtractor, ASTModel

    model, config, extractor = _load("hf-ast", model, trust_remote_code, local_files_only)
    if config.model_type != "audio-spectrogram-transformer" or not isinstance(extractor, ASTFeatureExtractor):
        raise ValueError(
            f"hf-ast: {model!r} is a {config.model_type!r} model with a {type(extractor).__name__}, "
            "expected an audio-spectrogram-transformer with an ASTFeatureExtractor"
        )
    net = _weights(ASTModel, "hf-ast", model, config, local_files_only)
    return HFAudioEncoder(net, extractor, "ast", mam_mask_ratio=mam_mask_ratio)


@register("hf-clap")
def create_hf_clap(
    model: str | None = None,
    use_projection: bool = True,
    trust_remote_code: bool = False,
    local_files_only: bool = False,
    mam_mask_ratio: float = 0.5,
) -> HFAudioEncoder:
    """CLAP audio tower (`ClapAudioModelWithProjection`) on 48 kHz waveforms.

    Accepts a full `ClapModel` checkpoint (its text tower is not loaded) or an audio-only one.
    Feature = projected audio embedding, or the pooled tower output with `use_projection=False`.
    """
    from transformers import ClapAudioModelWithProjection, ClapFeatureExtractor

    model, config, extractor = _load("hf-clap", model, trust_remote_code, local_files_only)
    if config.model_type == "clap":
        config = config.audio_config
    if config.model_type != "clap_audio_model" or not isinstance(extractor, ClapFeatureExtractor):
        raise ValueError(
            f"hf-clap: {model!r} is a {config.model_type!r} model with a {type(extractor).__name__}, "
            "expected a CLAP model with a ClapFeatureExtractor"
        )
    net = _weights(ClapAudioModelWithProjection, "hf-clap", model, config, local_files_only)
    return HFAudioEncoder(net, extractor, "clap", use_projection=use_projection, mam_mask_ratio=mam_mask_ratio)
