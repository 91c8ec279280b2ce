"""The encode-and-pool loop over audio files: read each, pool its windows' features, record what was skipped."""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch

from ..audio.io import AudioError
from .pool import Pooler, finite_means


def pool_files(paths: Sequence[str], read: Callable[[str], torch.Tensor],
               forward: Callable[[torch.Tensor], torch.Tensor], batch_size: int | None, strict: bool = False, indices: Sequence[int] | None = None,
               bar=None) -> tuple[dict[int, np.ndarray], list[tuple[int, str]]]:
    """({index: mean feature}, [(index, reason)] of the files skipped), indices into `paths` (default: all).

    `read(path)` gives a clip's (K, ...) inputs or raises AudioError (a skip, or an error with `strict`); a
    clip whose feature is not finite is a skip too, or a ValueError with `strict`.
    """
    pooler = Pooler(forward, batch_size)
    skipped: list[tuple[int, str]] = []
    for i in range(len(paths)) if indices is None else indices:
        try:
            windows = read(paths[i])
        except AudioError as e:
            if strict:
                raise
            skipped.append((i, e.reason))
        else:
            pooler.add(i, windows)
        if bar is not None:
            bar.update(1)
    rows, bad = finite_means(pooler.finish())
    if bad and strict:  # a ValueError, so the CLI ends with a message instead of a traceback
        raise ValueError(f"{paths[bad[0]]}: the encoder produced a non-finite embedding")
    return rows, sorted(skipped + [(i, "non-finite embedding") for i in bad])
