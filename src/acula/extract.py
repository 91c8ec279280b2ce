"""Audio files -> encoder inputs -> clip embeddings, for any registered encoder.

One path for every encoder: load and resample to the encoder's rate, cut windows with the
chosen policy, run the encoder's front end per window, average window features per clip. Bad
files become recorded skips (or errors with `strict=True`); a non-finite embedding is never
returned.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import torch
from tqdm.auto import tqdm

from ._io import atomic_path, sha256_file
from .audio import frontend
from .audio.io import AudioError, load_audio
from .encoders.base import AudioEncoder

AUDIO_EXTENSIONS = {".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif"}


def window_inputs(wave: np.ndarray, encoder: AudioEncoder, policy: str) -> torch.Tensor:
    """(K, ...) encoder inputs for one clip: K windows, each through the encoder's front end."""
    c = encoder.contract
    if policy == "acula":
        windows = frontend.acula_windows(wave, n_samples=int(round(c.window_seconds * c.sample_rate)))
    elif policy == "opera":
        windows = frontend.opera_windows(wave, sample_rate=c.sample_rate, seconds=c.window_seconds)
    elif policy == "whole":
        windows = wave[None, :]
    else:
        raise ValueError(f"unknown window policy {policy!r} (acula | opera | whole)")
    w = torch.from_numpy(np.ascontiguousarray(windows, dtype=np.float32))
    if c.frontend == "logmel":
        return frontend.logmel(w, sample_rate=c.sample_rate)
    return w


def read_clip(path: str | Path, encoder: AudioEncoder, policy: str) -> torch.Tensor:
    c = encoder.contract
    max_seconds = c.window_seconds if policy == "acula" else None
    wave = load_audio(path, sample_rate=c.sample_rate, max_seconds=max_seconds)
    try:
        return window_inputs(wave, encoder, policy)
    except ValueError as e:  # e.g. a recording that trims to nothing
        raise AudioError(path, str(e)) from e


def expand_inputs(inputs: Iterable[str | Path]) -> list[str]:
    """Files, folders (recursively, audio extensions) or CSV manifests with an `audio_path` column."""
    from .data.manifest import read_manifest

    out: list[str] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            out += sorted(str(f) for f in p.rglob("*") if f.suffix.lower() in AUDIO_EXTENSIONS and f.is_file())
        elif p.suffix.lower() == ".csv":
            out += [str(r["audio_path"]) for r in read_manifest(p, required=("audio_path",))]
        else:
            out.append(str(p))  # a missing file is reported as a skip by embed_files
    return out


@dataclass
class Embeddings:
    embeddings: np.ndarray
    paths: list[str]
    skipped_paths: list[str] = field(default_factory=list)
    skipped_reasons: list[str] = field(default_factory=list)
    config: dict = field(default_factory=dict)

    def save(self, path: str | Path) -> None:
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.savez(
                    f,
                    embeddings=self.embeddings.astype(np.float32),
                    paths=np.array(self.paths, dtype=str),
                    skipped_paths=np.array(self.skipped_paths, dtype=str),
                    skipped_reasons=np.array(self.skipped_reasons, dtype=str),
                    config=np.array(json.dumps(self.config)),
                )

    @classmethod
    def load(cls, path: str | Path) -> "Embeddings":
        with np.load(path, allow_pickle=False) as z:
            return cls(z["embeddings"], z["paths"].tolist(), z["skipped_paths"].tolist(),
                       z["skipped_reasons"].tolist(), json.loads(str(z["config"])))


def _clips(paths: list[str], encoder: AudioEncoder, policy: str, strict: bool,
           skipped: list[tuple[str, str]]) -> Iterator[tuple[int, torch.Tensor]]:
    for i, p in enumerate(paths):
        try:
            yield i, read_clip(p, encoder, policy)
        except AudioError as e:
            if strict:
                raise
            skipped.append((p, e.reason))


@torch.inference_mode()
def embed_files(
    encoder: AudioEncoder,
    paths: list[str],
    policy: str | None = None,
    batch_size: int = 32,
    strict: bool = False,
    progress: bool = True,
    device: str | torch.device = "cpu",
) -> Embeddings:
    """Embed each file; features of a clip's windows are averaged (OPERA's GT protocol)."""
    policy = policy or encoder.contract.window_policy
    encoder.eval().to(device)
    skipped: list[tuple[str, str]] = []
    sums: dict[int, torch.Tensor] = {}
    counts: dict[int, int] = {}
    pending: list[tuple[int, torch.Tensor]] = []  # (clip index, one window)

    def flush() -> None:
        owners = [o for o, _ in pending]
        x = torch.stack([w for _, w in pending]).to(device)
        f = encoder.forward_feature(x).float().cpu()
        for o, v in zip(owners, f):
            sums[o] = sums.get(o, 0) + v
            counts[o] = counts.get(o, 0) + 1
        pending.clear()

    bar = tqdm(total=len(paths), desc=f"embed [{encoder.name}]", unit="clip", disable=not progress)
    for i, windows in _clips(paths, encoder, policy, strict, skipped):
        same_shape = not pending or windows.shape[1:] == pending[0][1].shape
        if not same_shape:
            flush()
        pending += [(i, w) for w in windows]
        if len(pending) >= batch_size:
            flush()
        bar.update(1)
    if pending:
        flush()
    bar.update(len(paths) - bar.n)
    bar.close()

    kept, rows = [], []
    for i in sorted(sums):
        v = sums[i] / counts[i]
        if not torch.isfinite(v).all():
            if strict:
                raise FloatingPointError(f"{paths[i]}: the encoder produced a non-finite embedding")
            skipped.append((paths[i], "non-finite embedding"))
            continue
        kept.append(paths[i])
        rows.append(v.numpy())
    emb = np.stack(rows).astype(np.float32) if rows else np.zeros((0, encoder.feature_dim), np.float32)
    return Embeddings(emb, kept, [p for p, _ in skipped], [r for _, r in skipped], {})


def describe(encoder: AudioEncoder, policy: str, checkpoint: str | None) -> dict:
    """The config stored with embeddings: enough to refuse mixing incompatible features."""
    c = encoder.contract
    return {
        "encoder": dict(encoder.config),
        "feature_dim": encoder.feature_dim,
        "contract": c.to_dict(),
        "policy": policy,
        "frontend_fingerprint": frontend.fingerprint(
            sample_rate=c.sample_rate, frontend=c.frontend, policy=policy, window_seconds=c.window_seconds
        ),
        "checkpoint": checkpoint,
        "checkpoint_sha256": sha256_file(checkpoint) if checkpoint and Path(checkpoint).is_file() else None,
    }
