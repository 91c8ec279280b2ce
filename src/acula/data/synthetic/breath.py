"""Breathing: cycle timing and airflow envelopes, for lung recordings and for the respiratory
modulation of heart recordings.
"""

from __future__ import annotations

import numpy as np

from .dsp import _overlay


def _breath_cycles(rng, rate: float, ie: float, duration: float) -> list[tuple[float, float, float, float]]:
    """Cycles (start, inspiration s, expiration s, depth) covering the recording.

    Periods jitter ±7 % and are then rescaled so their mean is exactly 60/rate: the rate label is
    what the audio does, not just what was asked for.
    """
    period = 60.0 / rate
    t0 = -rng.uniform(0.0, period)
    periods = []
    while t0 + sum(periods) < duration:
        periods.append(period * float(np.clip(1 + 0.07 * rng.standard_normal(), 0.8, 1.2)))
    periods = np.asarray(periods) * period / np.mean(periods)
    cycles, t = [], t0
    for p in periods:
        r = ie * float(np.clip(1 + 0.06 * rng.standard_normal(), 0.8, 1.2))
        ti = p / (1 + r)
        depth = float(np.clip(1 + 0.12 * rng.standard_normal(), 0.6, 1.4))
        cycles.append((t, ti, p - ti, depth))
        t += p
    return cycles


def _expiration_length(te: float, tau: float) -> float:
    """Audible part of an expiration: passive flow decays as exp(-t / tau) and is inaudible after
    about three time constants, so a slow breath ends in a silent pause and a fast one does not."""
    return min(te, 3.0 * tau)


def _breath_envelopes(cycles, n: int, sr: int, exp_ratio: float, tau: float):
    """Amplitude envelopes of inspiratory and expiratory sound, and an inspiration indicator.

    Sound amplitude follows airflow: a half-sine over inspiration; over expiration a fast rise then
    the passive decay with the subject's time constant, cut (with a short taper) by the next breath.
    The end-expiratory pause therefore depends on the rate, as it does in patients.
    """
    insp, expi, ind = np.zeros(n, np.float32), np.zeros(n, np.float32), np.zeros(n, np.float32)
    for t, ti, te, depth in cycles:
        a, b = int(round(t * sr)), int(round((t + ti) * sr))
        u = (np.arange(a, b, dtype=np.float32) - a) / max(b - a, 1)
        _overlay(insp, a, depth * np.sin(np.pi * u) ** 1.2)
        _overlay(ind, a, np.sin(np.pi * u) ** 0.5)
        c = int(round((t + ti + _expiration_length(te, tau)) * sr))
        s = (np.arange(b, c, dtype=np.float32) - b) / sr
        shape = (1 - np.exp(-s / 0.08)) * np.exp(-s / tau)
        taper = np.clip((s[-1] - s) / min(0.05, max(te / 4, 1e-3)), 0, 1) if len(s) else s
        _overlay(expi, b, depth * exp_ratio * shape * taper / max(float(shape.max(initial=0)), 1e-6))
    return insp, expi, ind
