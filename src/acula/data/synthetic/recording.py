"""One synthetic recording: its metadata, labels and the latent parameters its audio is rendered from."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

import numpy as np


GENERATOR_VERSION = "acula-synthetic-1"  # part of every spec hash: bump it when rendering changes


@dataclass(frozen=True)
class SyntheticRecording:
    """One recording: `meta` mirrors a row of the real table (all values as CSV text), `labels` are
    the probe targets, `params` the latent generative parameters (never shown to a report)."""

    meta: dict
    labels: dict
    params: dict = field(repr=False)
    sample_rate: int = 16000
    n_samples: int = 131000

    @property
    def record_id(self) -> str:
        return self.meta["record_id"]

    @property
    def audio(self) -> np.ndarray:
        """Rendered on every access (≈20 ms) rather than cached, so a corpus never sits in memory."""
        from . import render  # looked up on the package at call time, so a patched `synthetic.render` is used

        return render(self)

    def spec_hash(self) -> str:
        """Fingerprint of everything the audio depends on; stored in the WAV to make writes resumable."""
        blob = json.dumps([GENERATOR_VERSION, self.sample_rate, self.n_samples, self.meta, self.labels,
                           self.params], sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()
