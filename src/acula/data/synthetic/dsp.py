"""Signal helpers the modalities share: seeded streams, weighted draws, magnitude responses, noise and
transients. All filtering is zero-phase in the frequency domain (phase does not matter to log-mel features).
"""

from __future__ import annotations

import functools
from typing import Callable, Iterable

import numpy as np
import scipy.fft


def _rng(*key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(k) for k in key]))


def _pick(rng: np.random.Generator, weights: dict):
    keys = list(weights)
    p = np.asarray([weights[k] for k in keys], dtype=float)
    return keys[int(rng.choice(len(keys), p=p / p.sum()))]


def _u(rng: np.random.Generator, lo_hi: tuple[float, float]) -> float:
    return float(rng.uniform(*lo_hi))


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x), dtype=np.float64)) + 1e-12)


@functools.lru_cache(maxsize=8)
def _grid(n: int, sr: int) -> tuple[int, np.ndarray]:
    """FFT length with ≥2048 samples of zero padding (limits circular wrap of filters) and its bins."""
    nfft = scipy.fft.next_fast_len(n + 2048, real=True)
    return nfft, np.fft.rfftfreq(nfft, 1.0 / sr).astype(np.float32)


def _lowpass(f, fc, order):
    return 1.0 / np.sqrt(1.0 + (f / fc) ** (2 * order))


def _highpass(f, fc, order):
    r = (f / fc) ** (2 * order)
    return np.sqrt(r / (1.0 + r))


def _logband(f, fc, octaves):
    return np.exp(-0.5 * (np.log2(np.maximum(f, 1e-3) / fc) / octaves) ** 2)


def _peak(f, fc, gain_db, octaves):
    return 1.0 + (10 ** (gain_db / 20) - 1.0) * _logband(f, fc, octaves)


def _shaped_noise(rng: np.random.Generator, n: int, sr: int, magnitude: Callable[[np.ndarray], np.ndarray]):
    """Gaussian noise with the given magnitude response, unit RMS; one inverse FFT (float32: 3x faster)."""
    nfft, f = _grid(n, sr)
    spec = np.empty(f.size, np.complex64)
    spec.real = rng.standard_normal(f.size, dtype=np.float32)
    spec.imag = rng.standard_normal(f.size, dtype=np.float32)
    spec *= magnitude(f)
    x = scipy.fft.irfft(spec, nfft)[:n]
    return x / np.float32(_rms(x))


def _filter(x: np.ndarray, sr: int, magnitude: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Zero-phase filtering by a magnitude response (phase does not matter to log-mel features)."""
    nfft, f = _grid(x.size, sr)
    return scipy.fft.irfft(scipy.fft.rfft(x.astype(np.float32), nfft) * magnitude(f), nfft)[: x.size]


def _overlay(out: np.ndarray, start: int, w: np.ndarray) -> None:
    """out[start:start+len(w)] += w, clipped to the recording."""
    a, b = max(start, 0), min(start + w.size, out.size)
    if b > a:
        out[a:b] += w[a - start: b - start]


def _transient(sr: int, comps: Iterable[tuple[float, float, float]], onset: float, phase: float = 0.0):
    """Sum of damped sinusoids (freq Hz, decay s, weight) with a soft onset, peak-normalised."""
    comps = [(f, tau, w) for f, tau, w in comps if f < 0.45 * sr]
    if not comps:
        return np.zeros(1)
    t = np.arange(int(6 * max(tau for _, tau, _ in comps) * sr) + 1) / sr
    w = sum(wt * np.exp(-t / tau) * np.sin(2 * np.pi * f * t + phase) for f, tau, wt in comps)
    w = w * (1.0 - np.exp(-t / onset))
    return w / (np.max(np.abs(w)) + 1e-12)


def _tone(sr: int, n: int, f_start: float, f_end: float, harmonics: Iterable[float], vibrato: tuple[float, float],
          phase0: float):
    """Harmonic tone gliding from f_start to f_end with vibrato (rate Hz, depth fraction)."""
    t = np.arange(n, dtype=np.float32) / sr
    f = np.linspace(f_start, f_end, n) * (1.0 + vibrato[1] * np.sin(2 * np.pi * vibrato[0] * t))
    phase = 2 * np.pi * np.cumsum(f) / sr + phase0
    out = np.zeros(n, np.float32)
    for k, a in enumerate(harmonics, start=1):
        if k * max(f_start, f_end) * (1 + vibrato[1]) < 0.45 * sr:
            out += a * np.sin(k * phase)
    return out


def _crackle(sr: int, kind: str, rng) -> np.ndarray:
    """A crackle: a sharp first deflection then a few cycles whose period lengthens (chirp down)."""
    if kind == "fine":  # < 5 ms, high-pitched
        f0, tau = _u(rng, (350, 800)), _u(rng, (0.0006, 0.001))
    else:  # ~10-15 ms, lower-pitched
        f0, tau = _u(rng, (120, 300)), _u(rng, (0.0025, 0.004))
    f0 = min(f0, 0.4 * sr)
    t = np.arange(int(5 * tau * sr) + 2) / sr
    inst = f0 * (1 - 0.5 * t / t[-1])
    w = np.exp(-t / tau) * np.sin(2 * np.pi * np.cumsum(inst) / sr) * (1 - np.exp(-t / 0.0002))
    return w / (np.max(np.abs(w)) + 1e-12) * rng.choice((-1.0, 1.0))
