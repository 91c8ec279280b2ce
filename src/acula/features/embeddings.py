"""`Embeddings`: clip features with the files they came from, the files skipped and why, and their key."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .._io import atomic_path


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
