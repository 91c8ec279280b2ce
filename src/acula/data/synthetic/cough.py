"""Cough recordings in CoughVID's vocabulary.

Explosive, intermediate and optional voiced phases shaped by vocal-tract formants; wet coughs carry
crackle-like transients and a lower band; a little room reverberation.
"""

from __future__ import annotations

import uuid
from typing import Callable

import numpy as np
import scipy.signal

from .chain import _nuisance
from .dsp import _crackle, _filter, _highpass, _lowpass, _overlay, _peak, _pick, _rms, _rng, _tone, _u
from .recording import SyntheticRecording
from .vocab import _MODALITY_KEY, DATASETS, _base_meta


_COUGH_STATUS = {"healthy": 0.5, "symptomatic": 0.3, "COVID-19": 0.2}


def _cough_subject(seed: int, i: int) -> list[SyntheticRecording]:
    r = _rng(seed, _MODALITY_KEY["cough"], i)
    uid = str(uuid.UUID(bytes=r.bytes(16), version=4))
    status = _pick(r, _COUGH_STATUS)
    gender = _pick(r, {"male": 0.6, "female": 0.38, "other": 0.02})
    age = int(r.integers(15, 80))
    wet = r.random() < {"healthy": 0.12, "symptomatic": 0.4, "COVID-19": 0.2}[status]
    condition = r.random() < {"healthy": 0.1, "symptomatic": 0.45, "COVID-19": 0.3}[status]
    fever = r.random() < {"healthy": 0.03, "symptomatic": 0.3, "COVID-19": 0.55}[status]
    if status == "healthy":
        diagnosis = "healthy_cough"
    elif status == "COVID-19" and r.random() < 0.7:
        diagnosis = "COVID-19"
    else:
        diagnosis = _pick(r, {"lower_infection": 0.6 if wet else 0.3, "upper_infection": 0.3,
                              "obstructive_disease": 0.1})
    severity = _pick(r, {"pseudocough": 0.5, "mild": 0.5} if status == "healthy" else {"mild": 0.85, "severe": 0.15})
    quality = _pick(r, {"good": 0.2, "ok": 0.65, "poor": 0.15})
    f0 = _u(r, {"male": (90, 140), "female": (160, 250)}.get(gender, (110, 220)))
    params = dict(
        key=[seed, _MODALITY_KEY["cough"], i, 0], wet=wet, f0=f0,
        formants=[_u(r, (400, 800)), _u(r, (1100, 1900)), _u(r, (2300, 3000))],
        n_coughs=int(r.integers(1, 5)), voiced=_u(r, (0.3, 0.9)), reverb=_u(r, (0.03, 0.12)),
        device="Smartphone microphone", device_mode="",
        **_nuisance(r, snr_db=(6, 18) if quality == "poor" else (15, 35), handling_rate=(0.0, 0.15),
                    gain_db=(-54, -34)),  # mostly silence between coughs: a low RMS, a high crest
    )
    meta = _base_meta("cough", uid, f"{DATASETS['cough']}-{uid}")
    meta.update({"uuid": uid, "cough_detected": f"{_u(r, (0.8, 1.0)):.4f}",
                 "age": "" if r.random() < 0.05 else str(age), "gender": gender,
                 "respiratory_condition": str(condition), "fever_muscle_pain": str(fever), "status": status,
                 "quality_1": quality, "cough_type_1": "wet" if wet else "dry", "diagnosis_1": diagnosis,
                 "severity_1": severity})
    labels = dict(murmur=None, crackles=None, wheezes=None, respiratory_rate=None)
    return [SyntheticRecording(meta, labels, params)]


def _render_cough(rec: SyntheticRecording, stream: Callable) -> tuple[dict, np.ndarray]:
    p, n, sr = rec.params, rec.n_samples, rec.sample_rate
    rng = stream("cough")
    burst, tract, wet = np.zeros(n, np.float32), np.zeros(n, np.float32), np.zeros(n, np.float32)
    shift = 0.75 if p["wet"] else 1.0  # mucus lowers and dulls the turbulence
    t = _u(rng, (0.3, 1.5))
    for _ in range(p["n_coughs"]):
        if t > n / sr - 0.6:
            break
        amp = _u(rng, (0.6, 1.0))
        e_len, i_len = _u(rng, (0.02, 0.05)), _u(rng, (0.1, 0.3)) * (1.3 if p["wet"] else 1.0)
        m = int(e_len * sr)
        u = np.arange(m) / sr
        env = np.minimum(1.0, u / 0.003) * np.exp(-u / (e_len / 2.5))
        _overlay(burst, int(t * sr), amp * env * rng.standard_normal(m))
        a = int((t + e_len) * sr)
        m = int(i_len * sr)
        u = np.arange(m) / sr
        env = 0.45 * np.exp(-u / (i_len / 2.0)) * np.minimum(1.0, u / 0.005)
        _overlay(tract, a, amp * env * rng.standard_normal(m))
        if p["wet"]:
            for _ in range(rng.poisson(_u(rng, (8, 20)))):
                click = amp * _u(rng, (0.2, 0.5)) * _crackle(sr, "coarse", rng)
                _overlay(wet, a + int(rng.uniform(0, i_len) * sr), click)
        end = t + e_len + i_len
        if rng.random() < p["voiced"]:  # glottis closes with a voiced "ahem"
            v_len = _u(rng, (0.05, 0.15))
            m = int(v_len * sr)
            f0 = p["f0"] * _u(rng, (0.9, 1.1))
            pulses = _tone(sr, m, f0, f0 * 0.9, [1.0 / k ** 1.2 for k in range(1, 25)], (5.0, 0.01), 0.0)
            _overlay(tract, int(end * sr), amp * _u(rng, (0.15, 0.4)) * np.hanning(m) * pulses / _rms(pulses))
            end += v_len
        t = end + _u(rng, (0.25, 1.2))
    formants = [f * shift for f in p["formants"]]

    def tract_mag(f):
        bands = sum(np.exp(-0.5 * ((f - fc) / (80 + 0.06 * fc)) ** 2) for fc in formants)
        return _highpass(f, 150, 2) * (0.15 + bands) * _lowpass(f, 5000 * shift, 2)

    x = _filter(burst, sr, lambda f: _highpass(f, 200, 2) * _peak(f, 1500 * shift, 6, 1.2) * _lowpass(f, 6000, 2))
    x += _filter(tract, sr, tract_mag) + 0.5 * wet
    # room: direct sound plus an exponentially decaying diffuse tail
    rir_len = int(4 * p["reverb"] * sr)
    rir = rng.standard_normal(rir_len) * np.exp(-np.arange(rir_len) / (p["reverb"] * sr)) * 0.08
    rir[0] = 1.0
    x = scipy.signal.fftconvolve(x, rir)[:n]
    return {"cough": x}, x
