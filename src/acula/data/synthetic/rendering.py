"""Rendering: the modality's physiological stems, then (unless `clean`) the recording chain."""

from __future__ import annotations

import numpy as np

from .chain import DEVICE_PROFILES, _device_response, _handling
from .cough import _render_cough
from .dsp import _filter, _highpass, _rms, _rng, _shaped_noise, _u
from .heart import _render_heart
from .lung import _render_lung
from .recording import SyntheticRecording


_RENDERERS = {"heart": _render_heart, "lung": _render_lung, "cough": _render_cough}


def render_stems(rec: SyntheticRecording) -> dict[str, np.ndarray]:
    """The physiological components before the recording chain, at the synthesiser's internal level
    (`render` rescales by the RMS of the baseline: heart + breath sounds, or the cough)."""
    stems, _ = _render_physiology(rec)
    return stems


_STREAMS = ("breath", "heart", "murmur", "crackles", "wheezes", "cough")


def _render_physiology(rec: SyntheticRecording) -> tuple[dict, float]:
    # One random stream per component, and the nuisance chain on another: `clean` renders the same
    # body, and switching a finding off in `params` leaves every other component bit-identical.
    def stream(name: str) -> np.random.Generator:
        return _rng(*rec.params["key"], 1, _STREAMS.index(name))

    stems, baseline = _RENDERERS[rec.meta["modality"]](rec, stream)
    return stems, _rms(baseline)


def render(rec: SyntheticRecording, clean: bool = False) -> np.ndarray:
    """float32 audio in [-1, 1]. `clean=True` drops noise, hum, handling, random gain and clipping."""
    p, n, sr = rec.params, rec.n_samples, rec.sample_rate
    stems, ref = _render_physiology(rec)
    x = sum(stems.values())
    device = _device_response(p)
    if clean:
        x = _filter(x, sr, device)
        gain_db = -30.0  # headroom for the loudest crackles, so the limiter (nearly) never acts
    else:
        rng = _rng(*p["key"], 2)
        prof = DEVICE_PROFILES[p["device"]]
        noise_rms = ref * 10 ** ((prof["ambient_db"] - p["snr_db"]) / 20)
        slope = p["noise_slope"]
        pink_to_brown = _shaped_noise(rng, n, sr, lambda f: _highpass(f, 15, 1) * np.maximum(f, 15.0) ** (-slope / 2))
        x = x + noise_rms * pink_to_brown
        x = x + _handling(rng, n, sr, p["handling_rate"], 1.5 * ref)
        if p["hum"]:
            t = np.arange(n, dtype=np.float32) / sr
            hum = sum(np.sin(2 * np.pi * p["hum"] * k * t + rng.uniform(0, 6.3)) / k
                      for k in (1, 2, 3, 4) if p["hum"] * k < 0.45 * sr)
            x = x + ref * 10 ** (p["hum_db"] / 20) * hum
        x = _filter(x, sr, device)
        x = x + ref * 10 ** (prof["hiss_db"] / 20) * rng.standard_normal(n, dtype=np.float32)  # electronics
        gain_db = p["gain_db"]
    x = x * (10 ** (gain_db / 20) / ref)  # the baseline (not the findings) sets the recording level
    if not clean and p["soft_clip"]:
        x = np.tanh(x * _u(_rng(*p["key"], 3), (1.5, 3.0)) / (np.max(np.abs(x)) + 1e-12))
    peak = np.max(np.abs(x))
    if peak > 0.999:  # the recorder's limiter
        x = x * (0.999 / peak)
    return x.astype(np.float32)
