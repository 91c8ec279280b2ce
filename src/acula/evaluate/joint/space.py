"""What zero-shot classification and retrieval share: one `JointSpaceConfig` in, one `JointSpace` out.

The options (which similarities, where the calibration comes from, teacher, cache, windowing, device...)
used to be threaded as a dozen positional parameters through every function of the chain; they now travel
as one object, so adding one touches the dataclass and its single consumer, not every signature.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ...align.model import AculaModel, load_aligned
from .calibration import Calibration, resolve_calibration
from .model import project_audio, teacher_for
from .similarity import check_modes


@dataclass
class JointSpaceConfig:
    """How an evaluation reaches the joint space of an aligned checkpoint (the `acula zeroshot` /
    `acula retrieve` options other than the manifest and the output folder)."""

    similarities: Sequence[str] = ("calibrated",)
    calibration: str | os.PathLike | None = None  # a file from `acula calibrate`
    align_manifest: str | os.PathLike | None = None  # or alignment pairs to fit one on now
    teacher: str | None = None  # default: the one stored in the checkpoint
    cache_dir: str | os.PathLike | None = None  # report-embedding cache; default OUT/text_cache
    policy: str = "acula"  # audio windowing; acula = the first 8.19 s, as in alignment
    batch_size: int = 32
    device: str = "cpu"
    trust_checkpoint: bool = False
    progress: bool = False
    log: Callable[[str], None] = print

    @classmethod
    def of(cls, config: "JointSpaceConfig | None" = None, **options: Any) -> "JointSpaceConfig":
        """`config` (or the defaults) with `options` replaced; unknown option names are an error."""
        return dataclasses.replace(config or cls(), **options)


@dataclass
class JointSpace:
    """The aligned model, its teacher, the text cache, the calibration (when a calibrated similarity is
    asked for) and the audio projections of the evaluated recordings."""

    model: AculaModel
    teacher: Any
    cache_dir: Path
    calibration: Calibration | None
    audio: Any  # extract.Embeddings: rows are audio projections; skipped files listed


def open_joint_space(checkpoint: str | os.PathLike, paths: Sequence[str], out: str | os.PathLike,
                     config: JointSpaceConfig) -> JointSpace:
    """Load the checkpoint and teacher, resolve the calibration and project the audio of `paths`."""
    check_modes(config.similarities)
    out = Path(out)
    model, ck = load_aligned(checkpoint, config.trust_checkpoint, config.device)
    teacher = teacher_for(ck, config.teacher, config.device, config.log)
    cache_dir = Path(config.cache_dir or out / "text_cache")
    cal = None
    if "calibrated" in config.similarities:
        cal = resolve_calibration(model, ck, teacher, config, cache_dir, out)
    audio = project_audio(model, paths, config.policy, config.batch_size, config.device, config.progress)
    return JointSpace(model, teacher, cache_dir, cal, audio)


def kept_rows(paths: Sequence[str], kept: Sequence[str]) -> np.ndarray:
    """Input indices of the embedded rows (`embed_files` keeps input order and drops skips)."""
    idx, j = [], 0
    for i, p in enumerate(paths):
        if j < len(kept) and kept[j] == p:
            idx.append(i)
            j += 1
    if j != len(kept):
        raise RuntimeError("embedded paths are not a subsequence of the inputs")
    return np.array(idx, dtype=int)
