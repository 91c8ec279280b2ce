"""An embedded synthetic cardio-respiratory corpus: heart, lung and cough recordings with metadata.

`make demo` needs audio whose clinical findings are carried by the sound itself, with metadata in
the vocabulary of the real datasets, so that the report builders, the alignment and the probes run
unchanged on real data. Nothing here reads `/work/shared`: the CirCor / ICBHI / CoughVID spellings
are copied into the constants below.

Physiology, briefly (all times in seconds, all amplitudes relative):
- heart: beats at 50-150 bpm with respiratory sinus arrhythmia; S1 = M1 + T1 and S2 = A2 + P2 as
  damped low-frequency transients, the A2-P2 split widening on inspiration; optional S3/S4;
  systolic and diastolic murmurs built from the CirCor descriptors (timing, shape, grade, pitch,
  quality), loudest at the most audible location, quieter at the other listed ones, absent elsewhere.
- lung: breathing cycles with I:E ~1:1.5-1:2 (longer in COPD); breath sound follows airflow, and
  expiratory flow decays with the subject's time constant (long in COPD, short in stiff or infant
  lungs), so slow breathing ends each breath in a silent pause that fast breathing lacks (the
  respiratory rate is in the sound's time course, not only in its period); vesicular / bronchial / tracheal
  spectra, fine and coarse crackles as short chirped transients, wheezes and rhonchi as tonal
  segments with harmonics; heart sounds bleed in as they do on a real chest.
- cough: explosive, intermediate and optional voiced phases shaped by vocal-tract formants;
  wet coughs carry crackle-like transients and a lower band; a little room reverberation.
Every recording then passes a recording chain: coloured background noise, handling/friction bursts,
mains hum, a device frequency response, a random gain and, rarely, soft clipping.

Labels follow the real tasks: `murmur` is CirCor's patient-level Murmur (1 Present, 0 Absent, None
Unknown), so a recording at a site outside "Murmur locations" is labelled 1 yet holds no murmur;
`crackles` / `wheezes` are per recording (ICBHI's cycle labels, any cycle); `respiratory_rate` is
the mean rate of the breaths actually rendered. Findings are more prevalent than in CirCor / ICBHI
(murmur ≈40 % of subjects, crackles ≈40 % and wheezes ≈30 % of lung recordings) so that a
demo-sized held-out split still has positives. `meta` values are CSV text, as the real tables spell
them ("nan" for an absent CirCor field, "" for an absent ICBHI / CoughVID one).

Each recording depends only on (seed, modality, subject index, location index), so generation is
order-independent and can be parallelised; `render(rec, clean=True)` re-renders the same physiology
without the nuisance chain, which the tests use to check that findings are really in the signal.
"""

from __future__ import annotations

import functools
import hashlib
import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import scipy.fft
import scipy.signal
import soundfile as sf

from .._io import atomic_path
from ..datasets.manifest import write_manifest

GENERATOR_VERSION = "acula-synthetic-1"
DATASETS = {"heart": "synth-circor", "lung": "synth-icbhi", "cough": "synth-coughvid"}
_MODALITY_KEY = {"heart": 1, "lung": 2, "cough": 3}

# ----------------------------------------------------------------------------------------------
# Vocabulary of the real tables (spelling copied from CirCor training/validation/test_data.csv,
# icbhi_cycles_demographics_diagnosis.csv and CoughVID metadata_compiled.csv). Absent CirCor
# fields are the literal text "nan", as in the real CSV; ICBHI and CoughVID leave them empty.
# ----------------------------------------------------------------------------------------------

CIRCOR_COLUMNS = (
    "Patient ID", "Recording locations:", "Age", "Sex", "Height", "Weight", "Pregnancy status",
    "Murmur", "Murmur locations", "Most audible location",
    "Systolic murmur timing", "Systolic murmur shape", "Systolic murmur grading",
    "Systolic murmur pitch", "Systolic murmur quality",
    "Diastolic murmur timing", "Diastolic murmur shape", "Diastolic murmur grading",
    "Diastolic murmur pitch", "Diastolic murmur quality",
    "Outcome", "Campaign", "Additional ID",
)
HEART_EXTRA_COLUMNS = ("Recording location", "Heart rate")
ICBHI_COLUMNS = (
    "Patient_ID", "Recording_Index", "Chest_Location", "Acquisition_Mode", "Equipment",
    "Crackles", "Wheezes", "Age", "Sex", "Diagnosis",
)
LUNG_EXTRA_COLUMNS = ("Respiratory_Rate",)
COUGHVID_COLUMNS = (
    "uuid", "cough_detected", "age", "gender", "respiratory_condition", "fever_muscle_pain",
    "status", "quality_1", "cough_type_1", "diagnosis_1", "severity_1",
)
LABEL_COLUMNS = ("murmur", "crackles", "wheezes", "respiratory_rate")
MANIFEST_COLUMNS = tuple(dict.fromkeys(
    ("audio_path", "record_id", "subject_id", "dataset", "modality", *LABEL_COLUMNS,
     *CIRCOR_COLUMNS, *HEART_EXTRA_COLUMNS, *ICBHI_COLUMNS, *LUNG_EXTRA_COLUMNS, *COUGHVID_COLUMNS)
))
NAN = "nan"

HEART_LOCATIONS = ("AV", "PV", "TV", "MV")  # CirCor's recording order
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

ICBHI_LOCATIONS = {"Trachea": "Tc", "Anterior left": "Al", "Anterior right": "Ar", "Posterior left": "Pl",
                   "Posterior right": "Pr", "Lateral left": "Ll", "Lateral right": "Lr"}
ICBHI_EQUIPMENT = {  # full name -> (file-name code, acquisition mode)
    "AKG C417L Microphone": ("AKGC417L", "Simultaneous/multichannel"),
    "3M Littmann Classic II SE Stethoscope": ("LittC2SE", "Simultaneous/multichannel"),
    "3M Littmann 3200 Electronic Stethoscope": ("Litt3200", "Sequential/single channel"),
    "WelchAllyn Meditron Master Elite Electronic Stethoscope": ("Meditron", "Sequential/single channel"),
}
_MODE_CODE = {"Simultaneous/multichannel": "mc", "Sequential/single channel": "sc"}
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

_COUGH_STATUS = {"healthy": 0.5, "symptomatic": 0.3, "COVID-19": 0.2}

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
        return render(self)

    def spec_hash(self) -> str:
        """Fingerprint of everything the audio depends on; stored in the WAV to make writes resumable."""
        blob = json.dumps([GENERATOR_VERSION, self.sample_rate, self.n_samples, self.meta, self.labels,
                           self.params], sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()


# ----------------------------------------------------------------------------------------------
# Small helpers
# ----------------------------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------------------------
# Breathing (lung recordings, and the respiratory modulation of heart recordings)
# ----------------------------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------------------------
# Heart
# ----------------------------------------------------------------------------------------------

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


# ----------------------------------------------------------------------------------------------
# Lung
# ----------------------------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------------------------
# Cough
# ----------------------------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------------------------
# Recording chain and rendering
# ----------------------------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------------------------


def _base_meta(modality: str, record_id: str, subject_id: str) -> dict:
    dataset = DATASETS[modality]
    return {"record_id": record_id, "subject_id": subject_id, "dataset": dataset, "modality": modality,
            "audio_path": f"{dataset}/{record_id}.wav"}


def generate(n_heart_subjects: int, n_lung_subjects: int, n_cough_subjects: int, seed: int = 0,
             sample_rate: int = 16000, seconds: float = 8.1875) -> list[SyntheticRecording]:
    """Recordings of all subjects (heart, then lung, then cough). Cheap: audio renders lazily."""
    for name, v in (("n_heart_subjects", n_heart_subjects), ("n_lung_subjects", n_lung_subjects),
                    ("n_cough_subjects", n_cough_subjects), ("seed", seed)):
        if int(v) != v or v < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {v!r}")
    if sample_rate < 4000:
        raise ValueError(f"sample_rate must be at least 4000 Hz to hold heart and lung sounds, got {sample_rate}")
    n = int(round(seconds * sample_rate))
    if n < sample_rate:
        raise ValueError(f"seconds must give at least 1 s of audio, got {seconds}")
    recs = []
    for make, count in ((_heart_subject, n_heart_subjects), (_lung_subject, n_lung_subjects),
                        (_cough_subject, n_cough_subjects)):
        for i in range(int(count)):
            recs += [SyntheticRecording(r.meta, r.labels, r.params, sample_rate, n) for r in make(int(seed), i)]
    return recs


def manifest_row(rec: SyntheticRecording) -> dict:
    """The manifest row: labels as text ('' for not applicable), then every source field."""
    row = {c: "" for c in MANIFEST_COLUMNS}
    row.update(rec.meta)
    for k in LABEL_COLUMNS:
        v = rec.labels.get(k)
        row[k] = "" if v is None else (f"{v:.1f}" if isinstance(v, float) else str(v))
    return row


def _is_current(path: Path, rec: SyntheticRecording) -> bool:
    try:
        with sf.SoundFile(path) as f:
            return (f.samplerate == rec.sample_rate and f.frames == rec.n_samples and f.channels == 1
                    and f.comment == rec.spec_hash())
    except (sf.LibsndfileError, RuntimeError, OSError):
        return False


def write_wav(path: Path, rec: SyntheticRecording) -> None:
    """16-bit PCM like the real corpora (CirCor, ICBHI): a quarter of float32's size, and its
    -96 dBFS quantisation floor lies far below the synthetic noise floor. The spec hash goes in the
    WAV comment so a re-run can tell a finished file from a stale one without rendering it."""
    pcm = np.round(np.clip(rec.audio, -1.0, 1.0) * 32767).astype(np.int16)
    with atomic_path(path) as tmp:
        with sf.SoundFile(tmp, "w", samplerate=rec.sample_rate, channels=1, subtype="PCM_16", format="WAV") as f:
            f.comment = rec.spec_hash()
            f.write(pcm)


def write_corpus(out_dir: str | Path, recordings: list[SyntheticRecording], manifest_name: str = "manifest.csv",
                 progress: bool = False) -> Path:
    """Write `<dataset>/<record_id>.wav` under `out_dir` and the manifest (paths relative to it);
    returns the manifest path. WAVs whose embedded spec hash is current are skipped, so an
    interrupted or repeated run only renders what is missing or stale."""
    out_dir = Path(out_dir)
    ids = [r.record_id for r in recordings]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise ValueError(f"duplicate record_id {dup!r}: recordings from different generate() calls mixed?")
    items = recordings
    if progress:
        from tqdm.auto import tqdm

        items = tqdm(recordings, desc=f"synthetic corpus -> {out_dir}", unit="rec")
    for rec in items:
        path = out_dir / rec.meta["audio_path"]
        if not _is_current(path, rec):
            write_wav(path, rec)
    manifest = out_dir / manifest_name
    write_manifest(manifest, [manifest_row(r) for r in recordings], columns=list(MANIFEST_COLUMNS))
    return manifest


def build(out_dir: str | Path, n_heart: int = 72, n_lung: int = 64, n_cough: int = 100, seed: int = 0,
          sample_rate: int = 16000, seconds: float = 8.1875, progress: bool = True) -> Path:
    """generate + write_corpus. The defaults give ≈625 recordings (heart ≈265, lung 256, cough 100)."""
    recs = generate(n_heart, n_lung, n_cough, seed=seed, sample_rate=sample_rate, seconds=seconds)
    return write_corpus(out_dir, recs, progress=progress)
