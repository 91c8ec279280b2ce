"""Heart recordings in CirCor's vocabulary.

Beats at 50-150 bpm with respiratory sinus arrhythmia; S1 = M1 + T1 and S2 = A2 + P2 as damped
low-frequency transients, the A2-P2 split widening on inspiration; optional S3/S4; systolic and diastolic
murmurs built from the CirCor descriptors (timing, shape, grade, pitch, quality), loudest at the most
audible location, quieter at the other listed ones, absent elsewhere.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from .breath import _breath_cycles, _breath_envelopes
from .chain import _nuisance
from .dsp import _highpass, _logband, _lowpass, _overlay, _pick, _rms, _rng, _shaped_noise, _tone, _transient, _u
from .recording import SyntheticRecording
from .vocab import _MODALITY_KEY, CIRCOR_COLUMNS, DATASETS, NAN, _base_meta


# "Recording locations:" values of the real table and how often we draw them (most subjects: all four)
_RECORDING_SETS = {"AV+PV+TV+MV": 0.78, "AV+MV": 0.06, "PV+TV+MV": 0.06, "AV+PV+TV": 0.04,
                   "AV+PV+MV": 0.03, "PV+TV": 0.03}
_SYS_TIMING = {"Holosystolic": 0.45, "Early-systolic": 0.30, "Mid-systolic": 0.18, "Late-systolic": 0.07}
# shape given timing: ejection (mid) murmurs are diamond, regurgitant (holo) murmurs plateau
_SYS_SHAPE = {
    "Holosystolic": {"Plateau": 0.75, "Diamond": 0.10, "Decrescendo": 0.10, "Crescendo": 0.05},
    "Early-systolic": {"Decrescendo": 0.50, "Plateau": 0.40, "Diamond": 0.10},
    "Mid-systolic": {"Diamond": 0.70, "Plateau": 0.25, "Crescendo": 0.05},
    "Late-systolic": {"Crescendo": 0.55, "Plateau": 0.45},
}
_SYS_GRADE = {"I/VI": 0.50, "II/VI": 0.22, "III/VI": 0.28}
_DIA_TIMING = {"Early-diastolic": 0.70, "Mid-diastolic": 0.15, "Holodiastolic": 0.15}
_DIA_GRADE = {"I/IV": 0.6, "II/IV": 0.25, "III/IV": 0.15}
_PITCH = {"Low": 0.45, "Medium": 0.30, "High": 0.25}
_SYS_QUALITY = {"Harsh": 0.50, "Blowing": 0.44, "Musical": 0.06}
_DIA_QUALITY = {"Blowing": 0.85, "Harsh": 0.15}
# murmur texture amplitude (RMS inside its envelope) relative to the M1 peak at the loudest site
_GRADE_LEVEL = {"I/VI": (0.06, 0.12), "II/VI": (0.12, 0.22), "III/VI": (0.22, 0.40),
                "I/IV": (0.06, 0.12), "II/IV": (0.12, 0.22), "III/IV": (0.22, 0.38)}
# centre frequency of the murmur band (Hz) by pitch
_PITCH_HZ = {"Low": (60.0, 110.0), "Medium": (130.0, 230.0), "High": (260.0, 450.0)}
# fractions of systole / diastole that each timing covers
_WINDOW = {"Holosystolic": (0.03, 1.0), "Early-systolic": (0.04, 0.5), "Mid-systolic": (0.2, 0.8),
           "Late-systolic": (0.5, 0.98), "Early-diastolic": (0.02, 0.45),
           "Mid-diastolic": (0.3, 0.75), "Holodiastolic": (0.02, 0.97)}


# relative loudness by site: S1 at the apex (MV/TV), S2 at the base (AV/PV), P2 at PV, S3/S4 at the apex
_SITE = {
    "AV": dict(s1=0.6, t1=0.4, s2=1.0, p2=0.4, s34=0.35),
    "PV": dict(s1=0.55, t1=0.4, s2=1.0, p2=0.8, s34=0.35),
    "TV": dict(s1=0.9, t1=0.8, s2=0.6, p2=0.35, s34=0.8),
    "MV": dict(s1=1.0, t1=0.5, s2=0.55, p2=0.2, s34=1.0),
}


def _heart_rate_range(age: str) -> tuple[float, float]:
    return {"Neonate": (110, 150), "Infant": (95, 145), "Child": (70, 125), "Adolescent": (55, 100)}.get(age, (60, 100))


def _heart_subject(seed: int, i: int) -> list[SyntheticRecording]:
    r = _rng(seed, _MODALITY_KEY["heart"], i)
    pid = 90001 + i
    pregnant = r.random() < 0.05  # CirCor's adult subjects are pregnant women, with Age "nan"
    if pregnant:
        age, sex = NAN, "Female"
    else:
        age = _pick(r, {"Neonate": 0.02, "Infant": 0.14, "Child": 0.70, "Adolescent": 0.14})
        sex = _pick(r, {"Female": 0.5, "Male": 0.5})
    h_range, bmi_range = {"Neonate": ((46, 54), (12, 15)), "Infant": ((55, 80), (14, 18)),
                          "Child": ((85, 150), (13.5, 21)), "Adolescent": ((145, 180), (16, 25))}.get(
        age, ((150, 175), (21, 32)))
    h = round(_u(r, h_range))
    w = _u(r, bmi_range) * (h / 100) ** 2
    p_missing = 0.9 if pregnant else 0.05  # CirCor rarely records the pregnant women's size
    height = f"{h:.1f}" if r.random() > p_missing else NAN
    weight = f"{w:.1f}" if r.random() > p_missing else NAN
    locations = _pick(r, _RECORDING_SETS).split("+")
    murmur = _pick(r, {"Present": 0.40, "Absent": 0.52, "Unknown": 0.08})

    fields = {c: NAN for c in CIRCOR_COLUMNS}
    fields.update({"Patient ID": str(pid), "Recording locations:": "+".join(locations), "Age": age, "Sex": sex,
                   "Height": height, "Weight": weight, "Pregnancy status": str(pregnant), "Murmur": murmur,
                   "Campaign": _pick(r, {"CC2014": 0.4, "CC2015": 0.6})})
    p_abnormal = {"Present": 0.84, "Absent": 0.38, "Unknown": 0.63}[murmur]
    fields["Outcome"] = "Abnormal" if r.random() < p_abnormal else "Normal"

    murmurs, site_gain = [], {loc: 0.0 for loc in locations}
    if murmur == "Present":
        listed = [loc for loc in locations if r.random() < 0.7]
        loudest = locations[int(r.integers(len(locations)))]
        listed = sorted(set(listed) | {loudest})  # CirCor lists murmur sites alphabetically
        fields["Murmur locations"], fields["Most audible location"] = "+".join(listed), loudest
        site_gain.update({loc: _u(r, (0.3, 0.7)) for loc in listed})
        site_gain[loudest] = 1.0
        has_sys = r.random() > 0.015
        has_dia = (not has_sys) or r.random() < 0.06
        if has_sys:
            timing = _pick(r, _SYS_TIMING)
            murmurs.append(_murmur(r, "Systolic", timing, _pick(r, _SYS_SHAPE[timing]), _pick(r, _SYS_GRADE),
                                   _pick(r, _SYS_QUALITY), fields))
        if has_dia:
            timing = _pick(r, _DIA_TIMING)
            shape = "Plateau" if timing == "Mid-diastolic" else "Decrescendo"
            murmurs.append(_murmur(r, "Diastolic", timing, shape, _pick(r, _DIA_GRADE), _pick(r, _DIA_QUALITY), fields))
    elif murmur == "Unknown" and r.random() < 0.5:
        # an uncertain label: maybe a faint murmur the annotator could not call, always a noisy recording
        site_gain.update({loc: _u(r, (0.4, 1.0)) for loc in locations})
        murmurs.append(_murmur(r, "Systolic", "Early-systolic", "Decrescendo", "I/VI", "Blowing", None))
        murmurs[-1]["level"] *= 0.7

    subject = dict(
        hr=_u(r, _heart_rate_range(age)),
        resp_rate=_u(r, {"Neonate": (35, 50), "Infant": (26, 40), "Child": (16, 28)}.get(age, (12, 20))),
        # (Hz, decay s, weight) of the damped components: S1 30-150 Hz and longer, S2 higher and shorter
        s1=[(_u(r, (35, 60)), _u(r, (0.015, 0.025)), 1.0),
            (_u(r, (80, 150)), _u(r, (0.008, 0.014)), _u(r, (0.4, 0.8)))],
        s2=[(_u(r, (50, 80)), _u(r, (0.008, 0.014)), 1.0),
            (_u(r, (120, 220)), _u(r, (0.005, 0.01)), _u(r, (0.5, 0.9)))],
        split1=_u(r, (0.01, 0.03)), split2=_u(r, (0.015, 0.03)), split2_insp=_u(r, (0.015, 0.035)),
        s2_level=_u(r, (0.7, 1.2)),
        s3=bool(r.random() < (0.2 if age in ("Child", "Adolescent") else 0.05)),
        s4=bool(r.random() < 0.05),
        s3_freq=_u(r, (20, 45)), murmurs=murmurs,
    )
    recordings = []
    for j, loc in enumerate(locations):
        rr = _rng(seed, _MODALITY_KEY["heart"], i, j, 0)
        hr = float(np.clip(subject["hr"] * (1 + 0.04 * rr.standard_normal()), 50, 150))
        site = {k: v * _u(rr, (0.8, 1.2)) for k, v in _SITE[loc].items()}
        noisy = murmur == "Unknown"
        params = dict(
            key=[seed, _MODALITY_KEY["heart"], i, j], **subject, hr_rec=round(hr, 1), site=site,
            murmur_gain=site_gain[loc], location=loc,
            device="3M Littmann 3200 Electronic Stethoscope", device_mode=_pick(rr, {"bell": 0.5, "diaphragm": 0.3,
                                                                                   "extended": 0.2}),
            breath_level=_u(rr, (0.01, 0.05)),
            **_nuisance(rr, snr_db=(-3, 5) if noisy else (6, 25), handling_rate=(0.1, 0.6) if noisy else (0.0, 0.2)),
        )
        pid_loc = f"{pid}_{loc}" if locations.count(loc) == 1 else f"{pid}_{loc}_{j}"
        meta = _base_meta("heart", pid_loc, f"{DATASETS['heart']}-{pid}")
        meta.update(fields)
        meta.update({"Recording location": loc, "Heart rate": f"{hr:.1f}"})
        labels = dict(murmur={"Present": 1, "Absent": 0}.get(murmur), crackles=None, wheezes=None,
                      respiratory_rate=None)
        recordings.append(SyntheticRecording(meta, labels, params))
    return recordings


def _murmur(r, phase: str, timing: str, shape: str, grade: str, quality: str, fields: dict | None) -> dict:
    """Draw a murmur's texture parameters and, when `fields` is given, write its CirCor descriptors."""
    pitch = _pick(r, _PITCH)
    if fields is not None:
        for key, value in (("timing", timing), ("shape", shape), ("grading", grade), ("pitch", pitch),
                           ("quality", quality)):
            fields[f"{phase} murmur {key}"] = value
    return dict(phase=phase, timing=timing, shape=shape, grade=grade, pitch=pitch, quality=quality,
                level=_u(r, _GRADE_LEVEL[grade]), fc=_u(r, _PITCH_HZ[pitch]),
                roughness=_u(r, (25, 70)), carvallo=_u(r, (0.1, 0.3)))


def _heart_sounds(rng, n: int, sr: int, p: dict, site: dict, insp: np.ndarray):
    """Heart-sound signal and the beat list [(S1 onset, A2 onset, next S1 onset)]."""
    duration, rr0 = n / sr, 60.0 / p["hr_rec"]
    t = t_end = -rng.uniform(0.0, rr0)
    intervals = []
    while t_end < duration:
        k = int(np.clip(t_end * sr, 0, n - 1))
        rsa = 0.04 * (insp[k] - 0.5)  # the heart speeds up on inspiration
        intervals.append(rr0 * (1 - rsa) * float(np.clip(1 + 0.015 * rng.standard_normal(), 0.95, 1.05)))
        t_end += intervals[-1]
    intervals = np.asarray(intervals) * rr0 / np.mean(intervals)  # mean rate = the "Heart rate" field
    out, beats = np.zeros(n, np.float32), []
    for rr in intervals:
        hr = 60.0 / rr
        systole = min(0.546 - 0.002 * hr - 0.05, 0.45 * rr)  # Weissler QS2 minus the Q-S1 delay
        k = int(np.clip(t * sr, 0, n - 1))
        beat_amp = (1 + 0.1 * (insp[k] - 0.5)) * _u(rng, (0.9, 1.1))
        ph = rng.uniform(0, 2 * np.pi)
        m1 = _transient(sr, p["s1"], 0.003, ph)
        _overlay(out, int(t * sr), site["s1"] * beat_amp * m1)
        _overlay(out, int((t + p["split1"]) * sr), site["s1"] * site["t1"] * beat_amp * m1)
        a2_t = t + systole
        k2 = int(np.clip(a2_t * sr, 0, n - 1))
        split = p["split2"] + p["split2_insp"] * insp[k2]  # physiological splitting
        a2 = _transient(sr, p["s2"], 0.002, ph)
        _overlay(out, int(a2_t * sr), p["s2_level"] * site["s2"] * beat_amp * a2)
        _overlay(out, int((a2_t + split) * sr), p["s2_level"] * site["s2"] * site["p2"] * beat_amp * a2)
        if p["s3"]:
            s3 = _transient(sr, [(p["s3_freq"], 0.03, 1.0)], 0.01)
            _overlay(out, int((a2_t + _u(rng, (0.12, 0.17))) * sr), 0.35 * site["s34"] * beat_amp * s3)
        if p["s4"]:
            s4 = _transient(sr, [(p["s3_freq"] * 0.9, 0.025, 1.0)], 0.01)
            _overlay(out, int((t + rr - _u(rng, (0.07, 0.1))) * sr), 0.3 * site["s34"] * beat_amp * s4)
        beats.append((t, a2_t, t + rr))
        t += rr
    return out, beats


def _murmur_texture(rng, n: int, sr: int, m: dict) -> np.ndarray:
    """Unit-RMS sound of one murmur: band noise (blowing), rough band noise (harsh), or a tone (musical)."""
    fc = m["fc"]
    if m["quality"] == "Musical":
        vib = (_u(rng, (4, 7)), 0.015)
        x = _tone(sr, n, fc, fc * _u(rng, (0.95, 1.05)), (1.0, 0.5, 0.25, 0.12), vib, rng.uniform(0, 2 * np.pi))
        x = x / _rms(x) + 0.15 * _shaped_noise(rng, n, sr, lambda f: _logband(f, fc, 0.4))
    elif m["quality"] == "Harsh":
        x = _shaped_noise(rng, n, sr, lambda f: _logband(f, fc * 1.2, 0.9))
        t = np.arange(n, dtype=np.float32) / sr
        am = sum(np.sin(2 * np.pi * m["roughness"] * k * t + rng.uniform(0, 6.3)) for k in (1.0, 1.37, 1.91))
        x = x * (1 + 0.8 * np.tanh(am))
    else:  # Blowing
        x = _shaped_noise(rng, n, sr, lambda f: _logband(f, fc * 1.4, 0.6))
    return x / _rms(x)


def _murmur_envelope(n: int, sr: int, beats, m: dict, insp: np.ndarray, rng) -> np.ndarray:
    """Murmur loudness over time: the timing window of every systole / diastole, in the given shape."""
    env = np.zeros(n, np.float32)
    lo, hi = _WINDOW[m["timing"]]
    for s1, a2, nxt in beats:
        start, end = (s1 + 0.03, a2) if m["phase"] == "Systolic" else (a2 + 0.04, nxt)
        a = int((start + lo * (end - start)) * sr)
        b = int((start + hi * (end - start)) * sr)
        if b - a < 4:
            continue
        u = np.linspace(0, 1, b - a)
        shape = {"Crescendo": 0.15 + 0.85 * u, "Decrescendo": 1 - 0.85 * u,
                 "Diamond": 0.1 + 0.9 * np.sin(np.pi * u) ** 1.5, "Plateau": np.ones_like(u)}[m["shape"]]
        taper = np.minimum(1.0, np.minimum(u, 1 - u) * (b - a) / (0.008 * sr))  # 8 ms fades, no clicks
        k = int(np.clip(a, 0, n - 1))
        resp = 1 + m["carvallo"] * insp[k]  # right-sided murmurs grow on inspiration; all a little
        _overlay(env, a, shape * taper * resp * _u(rng, (0.85, 1.15)))
    return env


def _render_heart(rec: SyntheticRecording, stream: Callable) -> tuple[dict, np.ndarray]:
    """Stems (heart, murmur, breath) and the baseline the recording level refers to."""
    p, n, sr = rec.params, rec.n_samples, rec.sample_rate
    rng = stream("breath")
    cycles = _breath_cycles(rng, p["resp_rate"], 1.6, n / sr)
    insp_env, exp_env, insp = _breath_envelopes(cycles, n, sr, 0.4, 0.5)
    vesicular = _shaped_noise(rng, n, sr, lambda f: _highpass(f, 80, 2) * _lowpass(f, 220, 2))
    breath = p["breath_level"] * vesicular * (insp_env + exp_env)
    heart, beats = _heart_sounds(stream("heart"), n, sr, p, p["site"], insp)
    murmur, rng = np.zeros(n, np.float32), stream("murmur")
    for m in p["murmurs"]:
        if p["murmur_gain"] > 0:
            env = _murmur_envelope(n, sr, beats, m, insp, rng)
            murmur += p["murmur_gain"] * m["level"] * env * _murmur_texture(rng, n, sr, m)
    return {"heart": heart, "murmur": murmur, "breath": breath}, heart + breath
