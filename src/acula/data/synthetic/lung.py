"""Lung recordings in ICBHI's vocabulary.

Breathing cycles with I:E ~1:1.5-1:2 (longer in COPD); breath sound follows airflow, and expiratory flow
decays with the subject's time constant (long in COPD, short in stiff or infant lungs), so slow breathing
ends each breath in a silent pause that fast breathing lacks (the respiratory rate is in the sound's time
course, not only in its period); vesicular / bronchial / tracheal spectra, fine and coarse crackles as
short chirped transients, wheezes and rhonchi as tonal segments with harmonics; heart sounds bleed in as
they do on a real chest.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from .breath import _breath_cycles, _breath_envelopes, _expiration_length
from .chain import _nuisance
from .dsp import _crackle, _highpass, _lowpass, _overlay, _peak, _pick, _rng, _shaped_noise, _tone, _u
from .heart import _heart_sounds
from .recording import SyntheticRecording
from .vocab import _MODALITY_KEY, _MODE_CODE, DATASETS, ICBHI_EQUIPMENT, ICBHI_LOCATIONS, _base_meta


_EQUIPMENT_P = {"AKG C417L Microphone": 0.45, "WelchAllyn Meditron Master Elite Electronic Stethoscope": 0.25,
                "3M Littmann Classic II SE Stethoscope": 0.15, "3M Littmann 3200 Electronic Stethoscope": 0.15}


@dataclass(frozen=True)
class _Diagnosis:
    """How one ICBHI diagnosis shapes a synthetic subject (plausible tendencies, not rules)."""

    p: float  # prevalence in the synthetic corpus
    ages: tuple[float, float]  # years
    rr: tuple[float, float]  # breaths/min for an adult; children get an age-dependent rate instead
    p_crackles: float  # subject has crackles somewhere
    p_wheezes: float
    p_coarse: float  # crackles are coarse rather than fine
    p_rhonchi: float  # continuous sounds are low-pitched rhonchi rather than wheezes
    ie: tuple[float, float]  # expiration / inspiration duration ratio
    tau: tuple[float, float]  # expiratory time constant R*C (s): long in obstruction, short in stiff or small lungs


_DIAGNOSES = {
    "COPD": _Diagnosis(0.42, (50, 90), (16, 28), 0.62, 0.45, 0.6, 0.35, (1.8, 3.0), (0.9, 1.6)),
    "Healthy": _Diagnosis(0.20, (0.5, 80), (8, 20), 0.06, 0.04, 0.3, 0.2, (1.4, 2.0), (0.35, 0.6)),
    "URTI": _Diagnosis(0.09, (0.5, 70), (12, 22), 0.15, 0.15, 0.5, 0.4, (1.4, 2.0), (0.35, 0.6)),
    "Pneumonia": _Diagnosis(0.07, (45, 88), (20, 32), 0.75, 0.20, 0.5, 0.3, (1.3, 1.8), (0.25, 0.5)),
    "Bronchiectasis": _Diagnosis(0.06, (40, 80), (14, 24), 0.80, 0.40, 0.85, 0.5, (1.5, 2.2), (0.6, 1.1)),
    "Bronchiolitis": _Diagnosis(0.06, (0.25, 3), (30, 40), 0.55, 0.65, 0.3, 0.3, (1.3, 2.0), (0.3, 0.5)),
    "LRTI": _Diagnosis(0.04, (0.5, 6), (24, 36), 0.45, 0.15, 0.5, 0.3, (1.3, 1.9), (0.2, 0.4)),
    "Asthma": _Diagnosis(0.06, (15, 75), (14, 26), 0.05, 0.85, 0.5, 0.15, (1.8, 2.8), (0.7, 1.3)),
}


def _child_rr(age: float) -> tuple[float, float]:
    return (30, 40) if age < 1 else (22, 34) if age < 6 else (18, 26) if age < 15 else (0, 0)


def _lung_subject(seed: int, i: int, n_locations: int = 4) -> list[SyntheticRecording]:
    r = _rng(seed, _MODALITY_KEY["lung"], i)
    pid = 301 + i
    diagnosis = _pick(r, {k: d.p for k, d in _DIAGNOSES.items()})
    d = _DIAGNOSES[diagnosis]
    age = _u(r, d.ages)
    age = round(age, 2) if age < 1 else float(round(age))
    rr_subject = _u(r, _child_rr(age) if age < 15 and diagnosis != "Bronchiolitis" else d.rr)
    sex = _pick(r, {"M": 0.62, "F": 0.38})
    missing = r.random() < 0.01  # ICBHI leaves Age and Sex empty for a few patients
    equipment = _pick(r, _EQUIPMENT_P)
    code, mode = ICBHI_EQUIPMENT[equipment]
    chest = [str(c) for c in r.choice(list(ICBHI_LOCATIONS), size=n_locations, replace=False)]
    if mode == "Simultaneous/multichannel" and "Trachea" not in chest and r.random() < 0.5:
        chest[0] = "Trachea"  # the multichannel rigs usually include a tracheal microphone
    series = _pick(r, {"b": 0.6, "p": 0.4})
    has_crackles = r.random() < d.p_crackles
    has_wheezes = r.random() < d.p_wheezes
    subject = dict(
        diagnosis=diagnosis, ie=_u(r, d.ie), tau=_u(r, d.tau),
        crackle_kind="coarse" if r.random() < d.p_coarse else "fine",
        wheeze_kind="rhonchus" if r.random() < d.p_rhonchi else "wheeze",
        wheeze_phase="expiration" if r.random() < 0.75 else "inspiration",
        polyphonic=bool(r.random() < 0.3),
        hr=_u(r, (90, 140) if age < 6 else (60, 100)),
    )
    recordings = []
    multichannel = mode == "Simultaneous/multichannel"
    for j, loc in enumerate(chest):
        rr = _rng(seed, _MODALITY_KEY["lung"], i, j, 0)
        # simultaneous channels hear the same breaths and heartbeats; sequential takes each their own
        take = 0 if multichannel else j + 1
        jitter = 1.0 if multichannel else 1 + 0.06 * rr.standard_normal()
        rate = round(float(np.clip(rr_subject * jitter, 8, 40)), 1)
        # a finding is heard at most, not all, sites of an affected subject; rarely at a healthy one
        crackles = int(rr.random() < (0.8 if has_crackles else 0.03))
        wheezes = int(rr.random() < (0.75 if has_wheezes else 0.02))
        if loc == "Trachea":
            sound = "tracheal"
        elif diagnosis == "Pneumonia" and rr.random() < 0.4:
            sound = "bronchial"  # consolidation carries bronchial breathing to the chest wall
        else:
            sound = "vesicular"
        # one multichannel take covers all sites; sequential takes are numbered per site
        rec_index = f"{1 + i % 3}{series}1" if multichannel else f"{j + 1}{series}1"
        params = dict(
            key=[seed, _MODALITY_KEY["lung"], i, j], take_key=[seed, _MODALITY_KEY["lung"], i, 1000 + take],
            **subject, rate=rate, location=loc, sound=sound,
            crackles=crackles, wheezes=wheezes, depth=_u(rr, (0.6, 1.4)),
            crackle_fraction=_u(rr, (0.6, 1.0)), wheeze_fraction=_u(rr, (0.5, 1.0)),
            crackle_level=float(np.exp(rr.uniform(np.log(2.0), np.log(8.0)))),
            wheeze_level=float(np.exp(rr.uniform(np.log(0.2), np.log(1.5)))),
            heart_level=_u(rr, {"Anterior left": (0.3, 0.8), "Trachea": (0.05, 0.2)}.get(loc, (0.1, 0.4))),
            device=equipment, device_mode=_pick(rr, {"bell": 0.3, "diaphragm": 0.5, "extended": 0.2}),
            **_nuisance(rr, snr_db=(6, 26), handling_rate=(0.0, 0.25), gain_db=(-46, -26)),
        )
        record_id = f"{pid}_{rec_index}_{ICBHI_LOCATIONS[loc]}_{_MODE_CODE[mode]}_{code}"
        meta = _base_meta("lung", record_id, f"{DATASETS['lung']}-{pid}")
        meta.update({"Patient_ID": str(pid), "Recording_Index": rec_index, "Chest_Location": loc,
                     "Acquisition_Mode": mode, "Equipment": equipment, "Crackles": str(crackles),
                     "Wheezes": str(wheezes), "Age": "" if missing else str(age), "Sex": "" if missing else sex,
                     "Diagnosis": diagnosis, "Respiratory_Rate": f"{rate:.1f}"})
        labels = dict(murmur=None, crackles=crackles, wheezes=wheezes, respiratory_rate=rate)
        recordings.append(SyntheticRecording(meta, labels, params))
    return recordings


def _breath_spectrum(sound: str, rng) -> tuple[Callable, Callable, float]:
    """Magnitude responses of inspiratory and expiratory sound, and the expiration/inspiration level."""
    if sound == "vesicular":
        fc, order = _u(rng, (150, 300)), _u(rng, (1.5, 2.5))
        return (lambda f: _highpass(f, 80, 2) * _lowpass(f, fc, order),
                lambda f: _highpass(f, 80, 2) * _lowpass(f, 0.8 * fc, order), _u(rng, (0.3, 0.5)))
    fc = _u(rng, (900, 1500) if sound == "tracheal" else (600, 1000))
    res = _u(rng, (250, 500))

    def mag(f):
        return _highpass(f, 100, 2) * _lowpass(f, fc, 3) * _peak(f, res, 6, 0.5) * _peak(f, 2.3 * res, 4, 0.4)

    return mag, mag, _u(rng, (0.8, 1.1))


def _render_lung(rec: SyntheticRecording, stream: Callable) -> tuple[dict, np.ndarray]:
    p, n, sr = rec.params, rec.n_samples, rec.sample_rate
    rng = stream("breath")
    cycles = _breath_cycles(_rng(*p["take_key"], 0), p["rate"], p["ie"], n / sr)
    insp_mag, exp_mag, exp_ratio = _breath_spectrum(p["sound"], rng)
    insp_env, exp_env, insp = _breath_envelopes(cycles, n, sr, exp_ratio, p["tau"])
    level = p["depth"] * (1.8 if p["sound"] == "tracheal" else 1.0)
    breath = level * (_shaped_noise(rng, n, sr, insp_mag) * insp_env + _shaped_noise(rng, n, sr, exp_mag) * exp_env)
    ref = level  # RMS of the breath noise at peak inspiratory flow

    # cycles whose inspiration / expiration falls (mostly) inside the recording carry the findings
    def phases(which: str):
        out = []
        for t, ti, te, _ in cycles:
            a, b = (t, t + ti) if which == "inspiration" else (t + ti, t + ti + _expiration_length(te, p["tau"]))
            if a < n / sr - 0.1 and b > 0.1:
                out.append((a, b))
        return out

    def chosen(items, fraction, rng):
        keep = [x for x in items if rng.random() < fraction]
        return keep or [items[int(rng.integers(len(items)))]]

    crackles, rng = np.zeros(n, np.float32), stream("crackles")
    if p["crackles"]:
        fine = p["crackle_kind"] == "fine"
        slots = [("inspiration", (0.45, 1.0) if fine else (0.0, 0.45), (5, 15) if fine else (2, 5))]
        if not fine:
            slots.append(("expiration", (0.0, 0.6), (0.5, 2)))
        for which, (u0, u1), lam in slots:
            for a, b in chosen(phases(which), p["crackle_fraction"], rng):
                for _ in range(max(1, rng.poisson(_u(rng, lam)))):
                    u = u0 + (u1 - u0) * rng.beta(2.0, 1.3 if fine else 2.0)
                    c = _crackle(sr, p["crackle_kind"], rng)
                    amp = ref * p["crackle_level"] * (1.0 if fine else 1.5) * float(np.exp(0.4 * rng.standard_normal()))
                    _overlay(crackles, int((a + u * (b - a)) * sr), amp * c)
    wheezes, rng = np.zeros(n, np.float32), stream("wheezes")
    if p["wheezes"]:
        rhonchus = p["wheeze_kind"] == "rhonchus"
        harmonics = (1.0, 0.7, 0.5, 0.35, 0.25, 0.15) if rhonchus else (1.0, 0.35, 0.12)
        f0s = [_u(rng, (90, 200) if rhonchus else (180, 700))]
        if p["polyphonic"]:
            f0s += [f0s[0] * _u(rng, (1.2, 1.9)) for _ in range(int(rng.integers(1, 3)))]
        for a, b in chosen(phases(p["wheeze_phase"]), p["wheeze_fraction"], rng):
            dur = max(0.12, _u(rng, (0.4, 0.9)) * (b - a))
            start = a + _u(rng, (0.0, max(0.0, (b - a) - dur)))
            m = int(dur * sr)
            u = np.linspace(0, 1, m)
            env = np.minimum(1.0, np.minimum(u, 1 - u) * dur / 0.03) * (0.6 + 0.4 * np.sin(np.pi * u))
            for k, f0 in enumerate(f0s):
                glide = _u(rng, (-0.15, 0.1))
                tone = _tone(sr, m, f0, f0 * (1 + glide), harmonics, (_u(rng, (3, 8)), 0.01), rng.uniform(0, 6.3))
                _overlay(wheezes, int(start * sr), ref * p["wheeze_level"] * env * tone / (1 + k))
    hp = dict(hr_rec=p["hr"], s1=[(45, 0.02, 1.0), (100, 0.01, 0.5)], s2=[(65, 0.012, 1.0), (160, 0.007, 0.6)],
              split1=0.02, split2=0.02, split2_insp=0.025, s2_level=0.9, s3=False, s4=False)
    heart, _ = _heart_sounds(_rng(*p["take_key"], 1), n, sr, hp, dict(s1=1.0, t1=0.5, s2=1.0, p2=0.5, s34=0.0), insp)
    heart *= p["heart_level"] * ref
    return {"breath": breath, "crackles": crackles, "wheezes": wheezes, "heart": heart}, breath + heart
