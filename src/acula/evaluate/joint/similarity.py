"""Scores between audio and text projections: calibrated (CKA-trained models) or raw cosine (InfoNCE)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .calibration import Calibration

SIMILARITIES = ("calibrated", "raw")


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(Na, Nb) cosine similarities; a zero vector has similarity 0 to everything."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    return a @ b.T


def similarity(audio: np.ndarray, text: np.ndarray, mode: str = "calibrated",
               calibration: Calibration | None = None) -> np.ndarray:
    """(N_audio, N_text) scores: cosine after calibration, or the plain cosine of the projections."""
    if mode == "raw":
        return cosine(audio, text)
    if mode == "calibrated":
        if calibration is None:
            raise ValueError("similarity='calibrated' needs a Calibration")
        return cosine(calibration.map_audio(audio), calibration.centre_text(text))
    raise ValueError(f"similarity must be one of {SIMILARITIES}, got {mode!r}")


def similarity_modes(text: str) -> tuple[str, ...]:
    """The CLI's --similarity value as modes ("both" is each of them)."""
    return SIMILARITIES if text == "both" else (text,)


def check_modes(modes) -> None:
    for m in modes:
        if m not in SIMILARITIES:
            raise ValueError(f"similarity must be one of {SIMILARITIES}, got {m!r}")
