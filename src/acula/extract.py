"""Audio files -> encoder inputs -> clip embeddings, for any registered encoder.

One path for every encoder: load and resample to the encoder's rate, cut windows with the
chosen policy, run the encoder's front end per window, average window features per clip. Bad
files become recorded skips (or errors with `strict=True`); a non-finite embedding is never
returned. Clips are processed in fixed chunks that never share a batch, so with `resume_dir` a
killed run picks up at its last finished chunk and ends with the same bits as an uninterrupted one.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np
import torch
from tqdm.auto import tqdm

from ._io import atomic_path, sha256_file, sha256_text, write_json
from .audio import frontend
from .audio.io import AudioError, load_audio
from .encoders.base import AudioEncoder
from .encoders.precision import autocast, resolve_precision

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
    try:
        wave = load_audio(path, sample_rate=c.sample_rate, max_seconds=max_seconds)
    except AudioError:
        raise
    except (ValueError, MemoryError, RuntimeError, OSError) as e:
        # a header that lies (e.g. a FLAC of unknown length read whole) can still escape the loader's
        # checks; it is this file's problem, so a skip, not the end of a long run
        raise AudioError(path, f"cannot load ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from e
    try:
        x = window_inputs(wave, encoder, policy)
        encoder.check_input(x)  # e.g. too few frames for `whole`: a skip of this clip, not a failed batch
        return x
    except ValueError as e:  # e.g. a recording that trims to nothing
        raise AudioError(path, str(e)) from e


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


PARTIAL_FORMAT = "acula-embed-partial/1"


def weights_sha256(module: torch.nn.Module) -> str:
    """Content hash of a module's parameters and buffers: tells whether two runs used the same weights."""
    h = hashlib.sha256()
    for k, v in sorted(module.state_dict().items()):
        t = v.detach().cpu().contiguous()
        h.update(f"{k}:{t.dtype}:{tuple(t.shape)}\n".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


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


def _embed_chunk(encoder: AudioEncoder, paths: list[str], lo: int, hi: int, policy: str, batch_size: int,
                 strict: bool, device: str | torch.device, bar,
                 precision: str = "fp32") -> tuple[dict[int, np.ndarray], list[tuple[int, str]]]:
    """Embeddings of clips lo..hi-1 (by input index) and the (index, reason) of those skipped.

    At most `batch_size` windows go through the encoder at once, even from one long clip.
    """
    skipped: list[tuple[int, str]] = []
    sums: dict[int, torch.Tensor] = {}
    counts: dict[int, int] = {}
    pending: list[tuple[int, torch.Tensor]] = []  # (clip index, one window)

    def flush(everything: bool) -> None:
        while pending and (everything or len(pending) >= batch_size):
            head = pending[:batch_size]
            del pending[:batch_size]
            with autocast(precision, device):
                f = encoder.forward_feature(torch.stack([w for _, w in head]).to(device)).float().cpu()
            for (o, _), v in zip(head, f):
                sums[o] = sums[o] + v if o in sums else v.clone()
                counts[o] = counts.get(o, 0) + 1

    for i in range(lo, hi):
        try:
            windows = read_clip(paths[i], encoder, policy)
        except AudioError as e:
            if strict:
                raise
            skipped.append((i, e.reason))
            bar.update(1)
            continue
        if pending and windows.shape[1:] != pending[0][1].shape:
            flush(everything=True)
        pending += [(i, w) for w in windows]
        flush(everything=False)
        bar.update(1)
    flush(everything=True)

    rows: dict[int, np.ndarray] = {}
    for i in sorted(sums):
        v = sums[i] / counts[i]
        if not torch.isfinite(v).all():
            if strict:  # a ValueError, so the CLI ends with a message instead of a traceback
                raise ValueError(f"{paths[i]}: the encoder produced a non-finite embedding")
            skipped.append((i, "non-finite embedding"))
            continue
        rows[i] = v.numpy().astype(np.float32)
    return rows, sorted(skipped)


@torch.inference_mode()
def embed_files(
    encoder: AudioEncoder,
    paths: list[str],
    policy: str | None = None,
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
    policy = policy or encoder.contract.window_policy
    precision = resolve_precision(precision, device)
    if batch_size < 1 or chunk_size < 1:
        raise ValueError(f"batch_size and chunk_size must be >= 1, got {batch_size} and {chunk_size}")
    encoder.eval().to(device)
    partial = None
    if resume_dir is not None:
        partial = _Partial(resume_dir, {
            "format": PARTIAL_FORMAT, "n_paths": len(paths), "paths_sha256": sha256_text(json.dumps(list(paths))),
            "encoder": json.loads(json.dumps(dict(encoder.config), default=str)),
            "weights_sha256": weights_sha256(encoder), "policy": policy, "batch_size": batch_size,
            "chunk_size": chunk_size, **({"precision": precision} if precision != "fp32" else {}),
        })
    rows: dict[int, np.ndarray] = {}
    skipped: list[tuple[int, str]] = []
    bar = tqdm(total=len(paths), desc=f"embed [{encoder.name}]", unit="clip", disable=not progress)
    for k, lo in enumerate(range(0, len(paths), chunk_size)):
        hi = min(lo + chunk_size, len(paths))
        done = partial.load(k) if partial else None
        if done is None:
            done = _embed_chunk(encoder, paths, lo, hi, policy, batch_size, strict, device, bar, precision)
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


@torch.inference_mode()
def embed_cache(encoder: AudioEncoder, cache, batch_size: int = 32, strict: bool = False, progress: bool = True,
                device: str | torch.device = "cpu", precision: str = "fp32") -> Embeddings:
    """`embed_files` over a built `acula.data.features.FeatureCache`: the windows are read from its
    memory-mapped shards instead of being decoded again, and averaged per clip the same way."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    encoder.eval().to(device)
    precision = resolve_precision(precision, device)
    sums = torch.zeros(len(cache), encoder.feature_dim, dtype=torch.float64)
    bar = tqdm(total=int(cache.n_windows), desc=f"embed [{encoder.name}, cached]", unit="window", disable=not progress)
    for clips, x in cache.iter_batches(batch_size):
        with autocast(precision, device):
            f = encoder.forward_feature(torch.from_numpy(x).to(device)).float().cpu()
        sums.index_add_(0, torch.from_numpy(clips), f.double())
        bar.update(len(clips))
    bar.close()
    emb = (sums / torch.from_numpy(cache.window_counts()).double()[:, None]).float()
    finite = torch.isfinite(emb).all(1).numpy()
    if strict and not finite.all():
        raise ValueError(f"{cache.paths[int(np.flatnonzero(~finite)[0])]}: the encoder produced a non-finite embedding")
    skipped = sorted([(i, p, r) for i, (p, r) in zip(cache.skipped_indices, cache.skipped)] +
                     [(int(cache.kept_indices[i]), cache.paths[i], "non-finite embedding")
                      for i in np.flatnonzero(~finite)])
    return Embeddings(emb.numpy()[finite], [p for p, ok in zip(cache.paths, finite) if ok],
                      [p for _, p, _ in skipped], [r for _, _, r in skipped], {})


def describe(encoder: AudioEncoder, policy: str, checkpoint: str | None) -> dict:
    """The config stored with embeddings: enough to refuse mixing incompatible features."""
    c = encoder.contract
    return {
        "encoder": dict(encoder.config),
        "feature_dim": encoder.feature_dim,
        "contract": c.to_dict(),
        "policy": policy,
        "frontend_fingerprint": frontend.fingerprint(
            sample_rate=c.sample_rate, frontend=c.frontend, policy=policy, window_seconds=c.window_seconds,
            window_samples="whole clip" if policy == "whole" else None,  # `whole` has no fixed window
        ),
        "checkpoint": checkpoint,
        "checkpoint_sha256": sha256_file(checkpoint) if checkpoint and Path(checkpoint).is_file() else None,
    }
