"""Arms: the encoder inputs, frozen layers, crops and one training run per arm."""

from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ...align.model import AculaModel
from ...align.trainer import AlignmentData, TrainConfig, Trainer, seed_everything, training_precision
from ...audio.spec import InputSpec
from ...encoders import create
from ...features import encode_windows, feature_forward, pool_clips, read_inputs

from .config import ExperimentConfig


# ---- inputs and arms -------------------------------------------------------------------------------------


def clip_input(path: str, encoder, seconds: float) -> np.ndarray:
    """One fixed window per clip: its first `seconds`, repeat-padded when shorter (OPERA's padding,
    so no window is part silence and clip length does not leak into the features), through the
    encoder's front end."""
    return read_inputs(path, encoder.contract, InputSpec("acula", seconds, padding="repeat"), encoder.name)[0].numpy()


def freeze(encoder, n_layers: int) -> None:
    if n_layers <= 0:
        return
    backbone = getattr(encoder, "backbone", None)
    if not isinstance(backbone, torch.nn.Sequential) or n_layers >= len(backbone):
        have = len(backbone) if isinstance(backbone, torch.nn.Sequential) else 0
        raise ValueError(f"--freeze-layers {n_layers}: {encoder.name} has {have} sequential backbone layers "
                         "(freezing needs a YAMNet-style encoder and must leave at least one layer trainable)")
    backbone[:n_layers].requires_grad_(False)


class FrozenTrunk:
    """Activations of the frozen leading layers of a YAMNet-style encoder, computed once.

    Every arm and seed shares those layers, so a clip's features after training need only the
    trainable top: `features(encoder)` equals `encoder.forward_feature` at a fraction of the cost.
    """

    def __init__(self, encoder, x: np.ndarray, n_layers: int, batch: int = 16):
        self.n_layers = n_layers
        trunk = encoder.backbone[:n_layers]
        self.state = {k: v.detach().clone() for k, v in trunk.state_dict().items()}
        encoder.eval()
        acts = []
        with torch.inference_mode():
            for i in tqdm(range(0, len(x), batch), desc=f"frozen layers 1-{n_layers}", unit="batch"):
                patches = encoder.frontend.patches(torch.from_numpy(x[i:i + batch]))
                b, p = patches.shape[:2]
                h = trunk(patches.flatten(0, 1)[:, None])
                acts.append(h.view(b, p, *h.shape[1:]))
        self.acts = torch.cat(acts)  # (N, patches, C, H, W)

    def check(self, encoder) -> None:
        for k, v in encoder.backbone[:self.n_layers].state_dict().items():
            if not torch.equal(v, self.state[k]):
                raise RuntimeError(f"frozen layer weight {k} changed during training")

    @torch.inference_mode()
    def features(self, encoder, batch: int = 64) -> np.ndarray:
        self.check(encoder)
        encoder.eval()
        top = encoder.backbone[self.n_layers:]
        # a clip's patches are its windows: the one pooling loop averages them, `batch` clips per pass
        return pool_clips(lambda h: top(h).mean(dim=(2, 3)), self.acts, batch * self.acts.shape[1]).numpy()


class CroppedData(AlignmentData):
    """A random `length`-long crop (axis 1) of each clip every time it is drawn: cheaper steps, more views."""

    def __init__(self, inputs: np.ndarray, text_emb: np.ndarray, length: int | None, seed: int,
                 groups: np.ndarray | None = None):
        super().__init__(inputs, text_emb, groups)
        if length is not None and not 0 < length <= inputs.shape[1]:
            raise ValueError(f"crop of {length} is outside the window of {inputs.shape[1]}")
        self.length = length
        self.rng = np.random.default_rng([seed, 7])

    def batch(self, idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        x, t = super().batch(idx)
        if self.length is None or self.length == x.shape[1]:
            return x, t
        starts = self.rng.integers(0, x.shape[1] - self.length + 1, size=len(idx))
        return torch.stack([x[i, s:s + self.length] for i, s in enumerate(starts)]), t


@torch.inference_mode()
def heads(model: AculaModel, x: np.ndarray, project) -> np.ndarray:
    model.eval()
    return project(torch.from_numpy(np.asarray(x, dtype=np.float32))).numpy()


class _NoCheckpointTrainer(Trainer):
    """Every result is computed in-process, so the ~80 MB checkpoints a Trainer writes each epoch are skipped."""

    def save(self, path: Path) -> None:
        pass


def train_arm(init, targets: np.ndarray, data: AlignmentData, config: TrainConfig, run_dir: Path,
              run_config: dict, keep_checkpoints: bool = False,
              device: torch.device | None = None) -> tuple[AculaModel, list[dict]]:
    """One arm from `init`: the same heads for every arm of a seed (seeded here), then `config.epochs`."""
    from accelerate import Accelerator

    seed_everything(config.seed)
    model = AculaModel(copy.deepcopy(init), text_dim=targets.shape[1])
    where = device or resolve_device("auto")
    config = replace(config, mixed_precision=training_precision(config.mixed_precision, where))
    acc = Accelerator(cpu=device is not None and device.type == "cpu", mixed_precision=config.mixed_precision)
    trainer = (Trainer if keep_checkpoints else _NoCheckpointTrainer)(model, data, config, run_dir, run_config,
                                                                      accelerator=acc)
    history = trainer.fit(resume=False)
    return model.cpu(), history  # features, probes and zero-shot run on the CPU arrays


# ---- the experiment -----------------------------------------------------------------------------------------


def initial_encoder(cfg: ExperimentConfig):
    """The encoder every arm starts from (before MAM pre-training): a checkpoint, or a random init seeded by the
    split seed, so a rerun and a prepared run elsewhere start from the same weights."""
    seed_everything(cfg.split_seed)
    return create(cfg.encoder, checkpoint=cfg.checkpoint, trust_checkpoint=cfg.trust_checkpoint,
                  **({"preset": cfg.preset} if cfg.preset else {}))


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


@torch.inference_mode()
def encode(encoder, x: np.ndarray, device: torch.device, batch: int = 64) -> np.ndarray:
    """Features of each one-window clip on `device` (the encoder goes back to the CPU after)."""
    encoder.to(device).eval()
    f = encode_windows(feature_forward(encoder, device), x, batch).numpy()
    encoder.cpu()
    return f
