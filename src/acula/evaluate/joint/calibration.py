"""The calibration that makes the joint space of a CKA-trained checkpoint comparable (see the package
docstring): an orthogonal Procrustes map fitted on the alignment pairs, stored beside the checkpoint."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np
import torch

from ..._io import atomic_path, sha256_file
from ...align.model import AculaModel
from ...encoders.checkpoint import Checkpoint
from .model import project_audio, project_texts

if TYPE_CHECKING:
    from .space import JointSpaceConfig

CALIBRATION_FORMAT = "acula-calibration/1"


@dataclass
class Calibration:
    """Maps audio projections into the centred text space: `scale * (a - mu_audio) @ rotation`.

    Fitted by orthogonal Procrustes with centring and isotropic scale, i.e. exactly the transforms linear
    CKA is blind to. `meta` records what it was fitted on and how well (`residual` = relative error of the
    fitted map, `residual_identity` = the same without rotation, for comparison).
    """

    mu_audio: np.ndarray
    mu_text: np.ndarray
    rotation: np.ndarray
    scale: float
    meta: dict = field(default_factory=dict)

    @classmethod
    def fit(cls, audio: np.ndarray, text: np.ndarray, **meta) -> "Calibration":
        a, t = np.asarray(audio, np.float64), np.asarray(text, np.float64)
        if a.ndim != 2 or t.ndim != 2 or len(a) != len(t):
            raise ValueError(f"calibration needs paired (N, d) projections, got {a.shape} and {t.shape}")
        if len(a) < 2:
            raise ValueError(f"calibration needs at least 2 alignment pairs, got {len(a)}")
        if not (np.isfinite(a).all() and np.isfinite(t).all()):
            raise ValueError("calibration pairs contain NaN or Inf")
        mu_a, mu_t = a.mean(0), t.mean(0)
        a0, t0 = a - mu_a, t - mu_t
        u, s, vt = np.linalg.svd(a0.T @ t0, full_matrices=False)
        rotation = u @ vt
        norm_a = float((a0**2).sum())
        if norm_a == 0.0:
            raise ValueError("all calibration audio projections are identical; nothing to fit")
        scale = float(s.sum() / norm_a)
        norm_t = math.sqrt(float((t0**2).sum())) or 1.0
        meta = {"n_pairs": int(len(a)),
                "residual": float(np.linalg.norm(scale * a0 @ rotation - t0) / norm_t),
                **({"residual_identity": _identity_residual(a0, t0, norm_t)} if a0.shape[1] == t0.shape[1] else {}),
                **meta}
        return cls(mu_a.astype(np.float32), mu_t.astype(np.float32), rotation.astype(np.float32), scale, meta)

    def map_audio(self, audio: np.ndarray) -> np.ndarray:
        return (self.scale * (np.asarray(audio, np.float32) - self.mu_audio) @ self.rotation).astype(np.float32)

    def centre_text(self, text: np.ndarray) -> np.ndarray:
        return np.asarray(text, np.float32) - self.mu_text

    def save(self, path: str | os.PathLike) -> Path:
        from safetensors.numpy import save_file

        path = Path(path)
        tensors = {"mu_audio": self.mu_audio, "mu_text": self.mu_text, "rotation": self.rotation,
                   "scale": np.array([self.scale], np.float32)}
        meta = {"format": CALIBRATION_FORMAT, "meta": json.dumps(self.meta, default=str)}
        with atomic_path(path) as tmp:
            save_file({k: np.ascontiguousarray(v, np.float32) for k, v in tensors.items()}, str(tmp), metadata=meta)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Calibration":
        from safetensors import safe_open

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: calibration file not found")
        try:
            with safe_open(str(path), framework="np") as f:
                header = f.metadata() or {}
                t = {k: f.get_tensor(k) for k in f.keys()}
        except Exception as e:
            raise ValueError(f"{path}: cannot read calibration file (truncated or corrupt?): {e}") from e
        if header.get("format") != CALIBRATION_FORMAT:
            raise ValueError(f"{path}: format {header.get('format')!r}, expected {CALIBRATION_FORMAT!r}")
        missing = [k for k in ("mu_audio", "mu_text", "rotation", "scale") if k not in t]
        if missing:
            raise ValueError(f"{path}: calibration lacks {', '.join(missing)}")
        return cls(t["mu_audio"], t["mu_text"], t["rotation"], float(t["scale"][0]), json.loads(header["meta"]))

    def check_fits(self, model: AculaModel, checkpoint_sha256: str | None, where: str = "") -> None:
        """Refuse a calibration fitted for another checkpoint (or another head width)."""
        d_a = model.audio_projection.layers[-1].out_features
        d_t = model.language_projection.layers[-1].out_features
        if self.rotation.shape != (d_a, d_t):
            raise ValueError(f"{where}: calibration maps {self.rotation.shape[0]}-d to {self.rotation.shape[1]}-d, "
                             f"the checkpoint's projections are {d_a}-d and {d_t}-d")
        stored = self.meta.get("checkpoint_sha256")
        if checkpoint_sha256 and stored and stored != checkpoint_sha256:
            raise ValueError(f"{where}: calibration was fitted for another checkpoint "
                             f"({self.meta.get('checkpoint')}, sha256 {stored[:12]}); refit it with acula calibrate")


def _identity_residual(a0: np.ndarray, t0: np.ndarray, norm_t: float) -> float:
    s = float((a0 * t0).sum() / max((a0**2).sum(), 1e-30))  # best scale without rotation
    return float(np.linalg.norm(s * a0 - t0) / norm_t)


def default_calibration_path(checkpoint_path: str | os.PathLike) -> Path:
    p = Path(checkpoint_path)
    return p.with_name(f"{p.stem}.calibration.safetensors")


def _checkpoint_sha256(ck: Checkpoint) -> str | None:
    return sha256_file(ck.path) if ck.path and Path(ck.path).is_file() else None


def fit_calibration(model: AculaModel, ck: Checkpoint, teacher, manifest: str | os.PathLike,
                    cache_dir: str | os.PathLike, policy: str = "acula", exclude_subjects: set[str] | None = None,
                    batch_size: int = 32, device: str | torch.device = "cpu", progress: bool = False,
                    text_column: str = "Gen_Report", log: Callable[[str], None] = print) -> Calibration:
    """Fit on the alignment pairs of `manifest` (audio_path, Gen_Report): labels are never read."""
    from ...datasets.manifest import read_manifest

    rows = read_manifest(manifest, required=("audio_path", text_column))
    if exclude_subjects:
        rows = [r for r in rows if r.get("subject_id", "") not in exclude_subjects]
    emb = project_audio(model, [r["audio_path"] for r in rows], policy, batch_size, device, progress)
    by_path = {r["audio_path"]: r for r in rows}
    if emb.skipped_paths:
        log(f"calibration: {len(emb.skipped_paths)} unreadable recordings left out "
            f"(e.g. {emb.skipped_paths[0]}: {emb.skipped_reasons[0]})")
    text = project_texts(model, teacher, [by_path[p][text_column] for p in emb.paths], cache_dir)
    cal = Calibration.fit(emb.embeddings, text, checkpoint=str(ck.path), checkpoint_sha256=_checkpoint_sha256(ck),
                          manifest=str(manifest), policy=policy, teacher=teacher.key)
    log(f"calibration: {cal.meta['n_pairs']} alignment pairs, relative residual {cal.meta['residual']:.3f} "
        f"(without rotation {cal.meta.get('residual_identity', float('nan')):.3f})")
    return cal


def resolve_calibration(model: AculaModel, ck: Checkpoint, teacher, config: JointSpaceConfig,
                        cache_dir: str | os.PathLike, out: str | os.PathLike | None = None) -> Calibration:
    """`config.calibration` (a file), else a fit on `config.align_manifest` (saved to OUT), else
    `<checkpoint>.calibration.safetensors`."""
    sha = _checkpoint_sha256(ck)
    if config.calibration is not None:
        cal = Calibration.load(config.calibration)
        cal.check_fits(model, sha, str(config.calibration))
        return cal
    if config.align_manifest is not None:
        cal = fit_calibration(model, ck, teacher, config.align_manifest, cache_dir, config.policy,
                              batch_size=config.batch_size, device=config.device, log=config.log)
        if out is not None:
            cal.save(Path(out) / "calibration.safetensors")
        return cal
    beside = default_calibration_path(ck.path) if ck.path else None
    if beside is not None and beside.is_file():
        cal = Calibration.load(beside)
        cal.check_fits(model, sha, str(beside))
        config.log(f"calibration: {beside}")
        return cal
    raise ValueError(f"no calibration for {ck.path}: run `acula calibrate --checkpoint {ck.path} --manifest "
                     "ALIGN.csv` (the alignment pairs), or pass --align-manifest ALIGN.csv or --calibration FILE; "
                     "or score with --similarity raw")
