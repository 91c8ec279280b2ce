"""One reader per corpus: a release folder, as published, -> `Recording`s (audio, subject, annotation).

    from acula.datasets import read
    result = read("sprsound", "/data")        # ReadResult: recordings, skipped (file, reason), notes

Report builders, bench tasks and `corpus build` start from these readers, so a release layout is parsed
in one place. A new corpus is one module here with `NAME`, `read(root) -> ReadResult`, added to READERS.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from . import circor, sprsound, yaseen
from .base import (AUDIO_EXTENSIONS, AudioIndex, DatasetError, ReadResult, Recording, find_audio, read_table,
                   require_audio)

__all__ = ["AUDIO_EXTENSIONS", "AudioIndex", "DatasetError", "READERS", "ReadResult", "Recording", "find_audio",
           "locate", "read", "read_table", "require_audio"]

READERS: dict[str, Callable[..., ReadResult]] = {m.NAME: m.read for m in (circor, sprsound, yaseen)}
_MODULES = {m.NAME: m for m in (circor, sprsound, yaseen)}


def read(name: str, root: str | Path, strict: bool = False) -> ReadResult:
    if name not in READERS:
        raise DatasetError(f"unknown dataset {name!r}; readers: {', '.join(READERS)}")
    result = READERS[name](root)
    if strict:
        result.raise_first()
    return result


def locate(name: str, root: str | Path) -> Path:
    """The release folder of `name` under a data root (or the root itself when it is that folder)."""
    if name not in _MODULES:
        raise DatasetError(f"unknown dataset {name!r}; readers: {', '.join(READERS)}")
    return _MODULES[name].dataset_dir(Path(root))
