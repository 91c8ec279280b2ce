"""Recordings -> encoder inputs, and the one key of features computed from them."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch

from .._io import sha256_file
from ..audio.io import AudioError
from ..audio.spec import InputSpec
from ..encoders.registry import default_spec


def as_spec(encoder, spec: InputSpec | str | None) -> InputSpec:
    """An `InputSpec` as given, or what a policy name (None: the encoder's own) means for this encoder."""
    return spec if isinstance(spec, InputSpec) else default_spec(encoder, spec)


def read_inputs(path: str | Path, contract: Any, spec: InputSpec, who: str = "encoder") -> torch.Tensor:
    """(K, ...) encoder inputs of one file; every way a file can fail is an AudioError (a skip, not a crash)."""
    try:
        wave = spec.load(path, contract)
    except AudioError:
        raise
    except (ValueError, MemoryError, RuntimeError, OSError) as e:
        # a header that lies (e.g. a FLAC of unknown length read whole) can still escape the loader's
        # checks; it is this file's problem, so a skip, not the end of a long run
        raise AudioError(path, f"cannot load ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from e
    try:
        x = spec.inputs(wave, contract)
        contract.check(x, who)  # e.g. too few frames for `whole`: a skip of this clip, not a failed batch
        return x
    except ValueError as e:  # e.g. a recording that trims to nothing
        raise AudioError(path, str(e)) from e


def weights_sha256(module: torch.nn.Module) -> str:
    """Content hash of a module's parameters and buffers: tells whether two runs used the same weights."""
    h = hashlib.sha256()
    for k, v in sorted(module.state_dict().items()):
        t = v.detach().cpu().contiguous()
        h.update(f"{k}:{t.dtype}:{tuple(t.shape)}\n".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def feature_key(encoder, spec: InputSpec, checkpoint: str | None = None) -> dict:
    """Everything features depend on except the file list and the weights' bits: the encoder's configuration,
    its inputs (`frontend_fingerprint`, the spec's one fingerprint) and the checkpoint file. Stored with
    embeddings, resume folders and benchmark caches, so features computed otherwise are refused, never mixed."""
    c = encoder.contract
    key = {
        "encoder": dict(encoder.config),
        "feature_dim": encoder.feature_dim,
        "contract": c.to_dict(),
        "inputs": spec.to_dict(),
        "frontend_fingerprint": spec.fingerprint(c),
        "checkpoint": checkpoint,
        "checkpoint_sha256": sha256_file(checkpoint) if checkpoint and Path(checkpoint).is_file() else None,
    }
    return json.loads(json.dumps(key, default=str))  # tuples -> lists, so a reloaded key compares equal
