"""Audio files -> encoder inputs -> clip embeddings, for any registered encoder.

One path for every encoder: an `InputSpec` loads and cuts each file into the encoder's inputs, and
`acula.features` pools the window features per clip. Bad files become recorded skips (or errors with
`strict=True`); a non-finite embedding is never returned. Clips are processed in fixed chunks that never
share a batch, so with `resume_dir` a killed run picks up at its last finished chunk and ends with the
same bits as an uninterrupted one.
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path
from typing import Iterable

import numpy as np
import torch
from tqdm.auto import tqdm

from ._io import atomic_path, sha256_text, write_json
from .audio.io import AudioError
from .audio.spec import InputSpec
from .encoders.base import AudioEncoder
from .encoders.precision import resolve_precision
from .features import Embeddings, as_spec, embed_cache, feature_forward, feature_key, pool_files, read_inputs
from .features import weights_sha256  # noqa: F401  (part of this module's API)

__all__ = ["AUDIO_EXTENSIONS", "Embeddings", "describe", "embed_cache", "embed_files", "expand_inputs", "read_clip",
           "weights_sha256"]

AUDIO_EXTENSIONS = {".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif"}


def read_clip(path: str | Path, encoder: AudioEncoder, policy: InputSpec | str | None) -> torch.Tensor:
    """(K, ...) inputs of one file for this encoder, or an AudioError naming why it cannot be used."""
    return read_inputs(path, encoder.contract, as_spec(encoder, policy), encoder.name)


def expand_inputs(inputs: Iterable[str | Path]) -> list[str]:
    """Files, folders (recursively, audio extensions) or CSV manifests with an `audio_path` column."""
    from .datasets.manifest import read_manifest

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


PARTIAL_FORMAT = "acula-embed-partial/2"  # 2: meta holds the features key


class _Partial:
    """Finished chunks of an interrupted `embed_files` run: `chunk-NNNNNN.npz` files plus `meta.json`.

    `meta.json` pins everything that changes the numbers (inputs, encoder weights, policy, batching);
    a folder written by another run is refused rather than mixed into this one.
    """

    def __init__(self, folder: str | Path, meta: dict):
        self.folder = Path(folder)
        meta_path = self.folder / "meta.json"
        if meta_path.is_file():
            try:
                old = json.loads(meta_path.read_text())
            except (OSError, json.JSONDecodeError):
                old = None
            if old != meta:
                diff = [k for k in meta if not isinstance(old, dict) or old.get(k) != meta[k]]
                raise ValueError(f"{self.folder} holds partial results of another embedding run (differs in: "
                                 f"{', '.join(diff) or 'format'}); delete it to start over")
        elif self.folder.exists() and any(self.folder.iterdir()):
            raise ValueError(f"{self.folder} exists and is not an embedding resume folder; remove it or pick another")
        else:
            write_json(meta_path, meta)

    def _path(self, k: int) -> Path:
        return self.folder / f"chunk-{k:06d}.npz"

    def load(self, k: int) -> tuple[dict[int, np.ndarray], list[tuple[int, str]]] | None:
        path = self._path(k)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                rows = dict(zip(z["index"].tolist(), z["embeddings"]))
                skipped = list(zip(z["skipped_index"].tolist(), z["skipped_reasons"].tolist()))
        except Exception as e:  # written atomically, so only outside damage gets here: recompute
            warnings.warn(f"{path}: unreadable partial result ({type(e).__name__}: {e}); recomputing it", stacklevel=3)
            return None
        return rows, skipped

    def store(self, k: int, rows: dict[int, np.ndarray], skipped: list[tuple[int, str]], dim: int) -> None:
        idx = sorted(rows)
        with atomic_path(self._path(k)) as tmp, open(tmp, "wb") as f:
            np.savez(f, index=np.array(idx, dtype=np.int64),
                     embeddings=np.stack([rows[i] for i in idx]) if idx else np.zeros((0, dim), np.float32),
                     skipped_index=np.array([i for i, _ in skipped], dtype=np.int64),
                     skipped_reasons=np.array([r for _, r in skipped], dtype=str))


def _embed_chunk(encoder: AudioEncoder, paths: list[str], lo: int, hi: int, spec: InputSpec, batch_size: int,
                 strict: bool, device: str | torch.device, bar,
                 precision: str = "fp32") -> tuple[dict[int, np.ndarray], list[tuple[int, str]]]:
    """Embeddings of clips lo..hi-1 (by input index) and the (index, reason) of those skipped.

    At most `batch_size` windows go through the encoder at once, even from one long clip.
    """
    forward = feature_forward(encoder, device, precision=precision)
    return pool_files(paths, lambda p: read_clip(p, encoder, spec), forward, batch_size, strict, range(lo, hi), bar)


@torch.inference_mode()
def embed_files(
    encoder: AudioEncoder,
    paths: list[str],
    policy: InputSpec | str | None = None,
    batch_size: int = 32,
    strict: bool = False,
    progress: bool = True,
    device: str | torch.device = "cpu",
    resume_dir: str | Path | None = None,
    chunk_size: int = 256,
    precision: str = "fp32",
) -> Embeddings:
    """Embed each file; features of a clip's windows are averaged (OPERA's GT protocol).

    Clips go in chunks of `chunk_size` whose windows never share a batch with another chunk's, so a
    clip's bits depend only on its chunk. With `resume_dir`, every finished chunk is saved there
    (atomically) and a rerun with the same inputs, weights and settings reuses it; the folder is
    removed once every chunk is done. Skipped files are listed in input order. `precision` "bf16" (or
    "auto" where the device computes bf16 natively, `acula.encoders.precision`) runs the encoder under bf16
    autocast: faster there, cosine >= 0.999 to fp32.
    """
    spec = as_spec(encoder, policy)
    precision = resolve_precision(precision, device)
    if batch_size < 1 or chunk_size < 1:
        raise ValueError(f"batch_size and chunk_size must be >= 1, got {batch_size} and {chunk_size}")
    encoder.eval().to(device)
    partial = None
    if resume_dir is not None:
        partial = _Partial(resume_dir, {
            "format": PARTIAL_FORMAT, "n_paths": len(paths), "paths_sha256": sha256_text(json.dumps(list(paths))),
            **feature_key(encoder, spec), "weights_sha256": weights_sha256(encoder), "batch_size": batch_size,
            "chunk_size": chunk_size, **({"precision": precision} if precision != "fp32" else {}),
        })
    rows: dict[int, np.ndarray] = {}
    skipped: list[tuple[int, str]] = []
    bar = tqdm(total=len(paths), desc=f"embed [{encoder.name}]", unit="clip", disable=not progress)
    for k, lo in enumerate(range(0, len(paths), chunk_size)):
        hi = min(lo + chunk_size, len(paths))
        done = partial.load(k) if partial else None
        if done is None:
            done = _embed_chunk(encoder, paths, lo, hi, spec, batch_size, strict, device, bar, precision)
            if partial:
                partial.store(k, *done, dim=encoder.feature_dim)
        else:
            if strict and done[1]:  # saved by a run that skipped; this one must not
                i, reason = done[1][0]
                raise AudioError(paths[i], reason)
            bar.update(hi - lo)
        rows.update(done[0])
        skipped += done[1]
    bar.close()
    if partial:
        shutil.rmtree(partial.folder, ignore_errors=True)

    kept = sorted(rows)
    emb = np.stack([rows[i] for i in kept]) if kept else np.zeros((0, encoder.feature_dim), np.float32)
    return Embeddings(emb.astype(np.float32), [paths[i] for i in kept],
                      [paths[i] for i, _ in skipped], [r for _, r in skipped], {})


def describe(encoder: AudioEncoder, policy: InputSpec | str | None, checkpoint: str | None) -> dict:
    """The config stored with embeddings: the features key, so incompatible features are refused, not mixed."""
    spec = as_spec(encoder, policy)
    return {**feature_key(encoder, spec, checkpoint), "policy": spec.policy}
