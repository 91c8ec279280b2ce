"""The aligned model, the teacher it was aligned to, and projections of audio and text into the joint space."""

from __future__ import annotations

import json
import os
import warnings
from typing import Callable, Sequence

import numpy as np
import torch

from ...align.model import AculaModel, load_aligned  # noqa: F401  (load_aligned: part of this module's API)
from ...encoders.checkpoint import Checkpoint


def teacher_for(ck: Checkpoint, model: str | None = None, device: str | torch.device | None = None,
                log: Callable[[str], None] = print):
    """The teacher the checkpoint was aligned to (from its stored key), or `model` with the stored settings.

    Text embeddings from any other teacher, layer, pooling or length land somewhere the text projection
    never saw, so a key that differs from the stored one is reported.
    """
    from ...text.teacher import Teacher

    stored = (ck.config or {}).get("teacher")
    info = json.loads(stored) if isinstance(stored, str) and stored.startswith("{") else {}
    name = model or info.get("model")
    if not name:
        raise ValueError(f"{ck.path}: the checkpoint does not record its teacher; pass it with --teacher")
    if name == "local":
        raise ValueError(f"{ck.path}: the checkpoint was aligned to a teacher from a local folder ({stored}); "
                         "pass that folder with --teacher")
    kwargs = {k: info[k] for k in ("pooling", "max_length", "dtype") if k in info}
    if "layer" in info:
        kwargs["layer"] = info["layer"]
    teacher = Teacher(name, device=device, progress=False, **kwargs)
    if info and json.loads(teacher.key) != info:
        now = json.loads(teacher.key)
        diff = sorted(k for k in set(now) | set(info) if now.get(k) != info.get(k))
        msg = (f"teacher {name!r} differs from the one {ck.path} was aligned to in {', '.join(diff)} "
               f"(stored {', '.join(f'{k}={info.get(k)!r}' for k in diff)}); scores may be meaningless")
        warnings.warn(msg, stacklevel=2)
        log(f"warning: {msg}")
    return teacher


@torch.inference_mode()
def project_audio(model: AculaModel, paths: Sequence[str], policy: str = "acula", batch_size: int = 32,
                  device: str | torch.device = "cpu", progress: bool = False):
    """`Embeddings` whose rows are audio projections (window features averaged, then projected).

    The default policy is the one alignment trained on (the first 8.19 s), so calibration pairs and
    evaluated clips go through the same path. Unreadable files are listed as skips.
    """
    from ...extract import embed_files

    emb = embed_files(model.encoder, list(paths), policy=policy, batch_size=batch_size, progress=progress,
                      device=device)
    model.eval()
    feats = torch.from_numpy(emb.embeddings).to(device)
    emb.embeddings = model.audio_projection(feats).float().cpu().numpy()
    return emb


@torch.inference_mode()
def project_texts(model: AculaModel, teacher, texts: Sequence[str], cache_dir: str | os.PathLike) -> np.ndarray:
    """(N, proj_dim) text projections; teacher embeddings come from (and go to) the on-disk cache."""
    from ...text.cache import embed_texts

    emb = embed_texts(teacher, list(texts), cache_dir)
    model.eval()
    device = next(model.language_projection.parameters()).device
    return model.language_projection(torch.from_numpy(emb).to(device)).float().cpu().numpy()
