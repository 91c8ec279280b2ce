"""The recording chain every recording passes: coloured background noise, handling/friction bursts, mains
hum, a device frequency response, a random gain and, rarely, soft clipping. Its parameters are drawn per
recording (`_nuisance`), independently of the findings.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from .dsp import _crackle, _highpass, _lowpass, _overlay, _peak, _rms, _u


# Frequency responses of the recording devices: high-pass (Hz, order), low-pass (Hz, order),
# resonances (Hz, dB, octaves), ambient pickup (dB added to the background) and hiss floor (dB re
# signal). Acoustic stethoscopes cut highs hard; the Littmann 3200 samples at 4 kHz; the AKG lapel
# microphone hears the room; a phone microphone (CoughVID) drops the lowest octave.
DEVICE_PROFILES = {
    "AKG C417L Microphone": dict(hp=(70, 2), lp=(6000, 4), peaks=((4000, 3, 1.0),), ambient_db=6, hiss_db=-60),
    "3M Littmann Classic II SE Stethoscope": dict(hp=(30, 1), lp=(800, 3), peaks=((120, 6, 0.6), (400, 4, 0.5)),
                                                  ambient_db=-3, hiss_db=-70),
    "3M Littmann 3200 Electronic Stethoscope": dict(hp=(20, 2), lp=(1900, 8), peaks=(), ambient_db=0, hiss_db=-55),
    "WelchAllyn Meditron Master Elite Electronic Stethoscope": dict(hp=(25, 2), lp=(4500, 4),
                                                                    peaks=((100, 5, 1.5),), ambient_db=0, hiss_db=-50),
    "Smartphone microphone": dict(hp=(150, 2), lp=(7000, 6), peaks=((2500, 3, 1.0),), ambient_db=3, hiss_db=-65),
}
# Littmann 3200 filter modes: bell (low emphasis), diaphragm (100-500 Hz), extended (flat)
_LITTMANN_MODES = {"bell": ((100, 6, 1.2),), "diaphragm": ((250, 6, 1.0),), "extended": ()}


def _nuisance(rng, snr_db: tuple[float, float], handling_rate: tuple[float, float],
              gain_db: tuple[float, float] = (-44, -24)) -> dict:
    """Per-recording nuisance factors: they must vary independently of the findings."""
    return dict(
        snr_db=_u(rng, snr_db), noise_slope=_u(rng, (0.6, 2.0)), handling_rate=_u(rng, handling_rate),
        hum=(float(rng.choice((50.0, 60.0))) if rng.random() < 0.35 else 0.0), hum_db=_u(rng, (-35, -15)),
        device_jitter=[_u(rng, (0.85, 1.15)), _u(rng, (0.85, 1.15)), _u(rng, (-2, 2)), _u(rng, (-1.5, 1.5))],
        gain_db=_u(rng, gain_db), soft_clip=bool(rng.random() < 0.03),
    )


def _device_response(p: dict) -> Callable[[np.ndarray], np.ndarray]:
    prof = DEVICE_PROFILES[p["device"]]
    hp_scale, lp_scale, peak_db, tilt = p["device_jitter"]
    peaks = prof["peaks"] + _LITTMANN_MODES.get(p["device_mode"], ()) * ("3200" in p["device"])

    def mag(f):
        h = _highpass(f, prof["hp"][0] * hp_scale, prof["hp"][1]) * _lowpass(f, prof["lp"][0] * lp_scale, prof["lp"][1])
        for fc, g, octv in peaks:
            h = h * _peak(f, fc, g + peak_db, octv)
        return h * (np.maximum(f, 20.0) / 500.0) ** (tilt / 6.02)  # tilt in dB/octave

    return mag


def _handling(rng, n: int, sr: int, rate: float, level: float) -> np.ndarray:
    """Stethoscope handling thumps and skin/hair friction (crackle-like clicks): real confounders."""
    out = np.zeros(n, np.float32)
    for _ in range(rng.poisson(rate * n / sr)):
        m = int(_u(rng, (0.03, 0.4)) * sr)
        thump = np.cumsum(rng.standard_normal(m))
        thump -= np.linspace(thump[0], thump[-1], m)
        burst = thump / _rms(thump) + 0.3 * rng.standard_normal(m)
        burst *= np.hanning(m) * level * float(np.exp(rng.uniform(0, np.log(4))))
        a = int(rng.uniform(0, n))
        _overlay(out, a, burst)
        for _ in range(rng.poisson(3)):  # friction clicks near the thump
            c = _crackle(sr, "fine" if rng.random() < 0.5 else "coarse", rng)
            _overlay(out, a + int(rng.uniform(0, m)), level * _u(rng, (0.5, 2.0)) * c)
    return out
