"""The synthetic corpus: determinism, real-data vocabulary, label consistency, and that the findings
are in the sound (and not in a trivial level statistic)."""

from __future__ import annotations

import csv
import dataclasses
import inspect
import re
from collections import defaultdict

import numpy as np
import pytest
import scipy.signal as ss
import soundfile as sf
from scipy.ndimage import median_filter
from sklearn.metrics import roc_auc_score

from acula.data import synthetic as S

SR = 16000


@pytest.fixture(scope="module")
def corpus() -> list[S.SyntheticRecording]:
    """≈300 heart + lung recordings (and a few coughs): big enough for AUROC checks."""
    return S.generate(40, 40, 6, seed=0)


@pytest.fixture(scope="module")
def rendered(corpus) -> dict[str, np.ndarray]:
    return {r.record_id: r.audio for r in corpus}


def _rows(path) -> list[dict]:
    with open(path, newline="", encoding="utf-8-sig") as f:
        return list(csv.DictReader(f))


# --- determinism, format --------------------------------------------------------------------------


def test_same_seed_same_corpus_different_seed_different():
    a, b, c = S.generate(2, 2, 2, seed=0), S.generate(2, 2, 2, seed=0), S.generate(2, 2, 2, seed=1)
    assert [r.meta for r in a] == [r.meta for r in b] and [r.labels for r in a] == [r.labels for r in b]
    for ra, rb in zip(a, b):
        assert np.array_equal(ra.audio, rb.audio)
    assert [r.meta for r in a] != [r.meta for r in c]
    assert not np.array_equal(a[0].audio, c[0].audio)


def test_recording_depends_only_on_seed_and_index():
    """Corpus size and the other modalities do not change a recording: generation can be split up."""
    small = S.generate(1, 1, 1, seed=3)
    big = S.generate(4, 3, 2, seed=3)
    by_id = {r.record_id: r for r in big}
    for r in small:
        assert r.meta == by_id[r.record_id].meta
        assert np.array_equal(r.audio, by_id[r.record_id].audio)


@pytest.mark.parametrize("sample_rate,seconds", [(16000, 8.1875), (4000, 3.0)])
def test_sample_rate_length_range(sample_rate, seconds):
    for r in S.generate(1, 1, 1, seed=2, sample_rate=sample_rate, seconds=seconds):
        x = r.audio
        assert r.sample_rate == sample_rate and x.shape == (int(round(seconds * sample_rate)),)
        assert x.dtype == np.float32 and np.isfinite(x).all()
        assert np.abs(x).max() <= 1.0 and np.abs(x).max() > 1e-3


def test_audio_finite_and_bounded(corpus, rendered):
    for r in corpus:
        x = rendered[r.record_id]
        assert x.shape == (131000,) and np.isfinite(x).all() and np.abs(x).max() <= 1.0, r.record_id


@pytest.mark.parametrize("bad", [dict(n_heart_subjects=-1), dict(seed=1.5), dict(sample_rate=1000)])
def test_bad_arguments_are_named(bad):
    kwargs = dict(n_heart_subjects=1, n_lung_subjects=1, n_cough_subjects=1) | bad
    with pytest.raises(ValueError, match=next(iter(bad))):
        S.generate(**kwargs)


# --- metadata ----------------------------------------------------------------------------------------


def test_vocabulary_matches_real_tables(corpus, shared_dir):
    """Every categorical value we emit is spelled as in the real CirCor / ICBHI / CoughVID tables."""
    meta = shared_dir / "metadata"
    circor = [row for split in ("training", "validation", "test")
              for row in _rows(meta / "circor" / f"{split}_data.csv")]
    icbhi = _rows(meta / "icbhi" / "icbhi_cycles_demographics_diagnosis.csv")
    coughvid = _rows(meta / "coughvid" / "metadata_compiled.csv")
    diagnoses = {line.split("\t")[1].strip() for line in
                 (meta / "icbhi" / "ICBHI_Challenge_diagnosis.txt").read_text().splitlines() if line.strip()}

    assert list(circor[0]) == list(S.CIRCOR_COLUMNS)
    assert [c for c in icbhi[0] if c not in ("Cycle_Start", "Cycle_End")] == list(S.ICBHI_COLUMNS)
    assert set(S.COUGHVID_COLUMNS) <= set(coughvid[0])
    numeric = {"Patient ID", "Height", "Weight", "Additional ID", "Patient_ID", "Recording_Index", "uuid",
               "cough_detected", "age"}
    checks = [("heart", S.CIRCOR_COLUMNS, circor, set()), ("lung", S.ICBHI_COLUMNS, icbhi, {"Age"}),
              ("cough", S.COUGHVID_COLUMNS, coughvid, set())]
    for modality, columns, real, also_numeric in checks:
        recs = [r for r in corpus if r.meta["modality"] == modality]
        assert recs
        for col in columns:
            if col in numeric | also_numeric:
                continue
            allowed = {row[col] for row in real}
            emitted = {r.meta[col] for r in recs}
            assert emitted <= allowed, f"{modality} column {col!r}: {sorted(emitted - allowed)} not in real table"
    assert {r.meta["Diagnosis"] for r in corpus if r.meta["modality"] == "lung"} <= diagnoses

    # numeric fields are spelled the way the real files spell them
    for r in corpus:
        m = r.meta
        if m["modality"] == "heart":
            assert m["Patient ID"].isdigit()
            for col in ("Height", "Weight"):
                assert m[col] == "nan" or re.fullmatch(r"\d+\.\d", m[col]), (col, m[col])
            assert m["Recording location"] in m["Recording locations:"].split("+")
            assert 50 <= float(m["Heart rate"]) <= 150
        elif m["modality"] == "lung":
            assert m["Age"] == "" or str(float(m["Age"])) == m["Age"]
            assert re.fullmatch(r"\d+[bp]\d+", m["Recording_Index"])
            mode = {"Simultaneous/multichannel": "mc", "Sequential/single channel": "sc"}[m["Acquisition_Mode"]]
            parts = [m["Patient_ID"], m["Recording_Index"], S.ICBHI_LOCATIONS[m["Chest_Location"]], mode,
                     S.ICBHI_EQUIPMENT[m["Equipment"]][0]]
            assert r.record_id == "_".join(parts)  # ICBHI's file naming
        else:
            assert m["age"] == "" or m["age"].isdigit()
            assert 0.0 <= float(m["cough_detected"]) <= 1.0


def test_labels_consistent_with_metadata(corpus):
    ids = [r.record_id for r in corpus]
    assert len(set(ids)) == len(ids)
    murmur_fields = [c for c in S.CIRCOR_COLUMNS if "urmur " in c or c == "Most audible location"]
    for r in corpus:
        m, y = r.meta, r.labels
        assert m["audio_path"] == f"{m['dataset']}/{r.record_id}.wav" and m["dataset"] == S.DATASETS[m["modality"]]
        if m["modality"] == "heart":
            assert y["murmur"] == {"Present": 1, "Absent": 0, "Unknown": None}[m["Murmur"]]
            assert y["crackles"] is y["wheezes"] is y["respiratory_rate"] is None
            assert (m["Pregnancy status"] == "True") == (m["Age"] == "nan")
            if m["Murmur"] == "Present":
                listed = m["Murmur locations"].split("+")
                assert listed == sorted(listed) and m["Most audible location"] in listed
                assert set(listed) <= set(m["Recording locations:"].split("+"))
                for phase in ("Systolic", "Diastolic"):
                    values = [m[f"{phase} murmur {k}"] for k in ("timing", "shape", "grading", "pitch", "quality")]
                    assert all(v == "nan" for v in values) or all(v != "nan" for v in values), values
                assert m["Systolic murmur timing"] != "nan" or m["Diastolic murmur timing"] != "nan"
            else:
                assert all(m[c] == "nan" for c in murmur_fields), r.record_id
        elif m["modality"] == "lung":
            assert y["murmur"] is None
            assert (y["crackles"], y["wheezes"]) == (int(m["Crackles"]), int(m["Wheezes"]))
            assert y["respiratory_rate"] == float(m["Respiratory_Rate"]) and 8 <= y["respiratory_rate"] <= 40
            if int(m["Patient_ID"]) < 311:  # rendering stems is the slow part; ten subjects suffice
                assert (S.render_stems(r)["crackles"] != 0).any() == bool(y["crackles"])
        else:
            assert all(v is None for v in y.values())
    heart = [r.labels["murmur"] for r in corpus if r.meta["modality"] == "heart"]
    lung = [r for r in corpus if r.meta["modality"] == "lung"]
    assert {0, 1, None} <= set(heart)  # Present, Absent and Unknown all occur
    for key in ("crackles", "wheezes"):
        assert 0.15 < np.mean([r.labels[key] for r in lung]) < 0.6, key


# --- the findings are in the sound ------------------------------------------------------------------


def test_murmur_loudest_at_most_audible_location(corpus):
    subjects = defaultdict(list)
    for r in corpus:
        if r.meta["modality"] == "heart" and r.meta["Murmur"] == "Present":
            subjects[r.meta["subject_id"]].append(r)
    assert len(subjects) >= 8
    checked_mixture = 0
    for recs in subjects.values():
        m = recs[0].meta
        loudest, listed = m["Most audible location"], m["Murmur locations"].split("+")
        stem = {r.meta["Recording location"]: S.render_stems(r)["murmur"] for r in recs}
        energy = {loc: float(np.mean(x ** 2)) for loc, x in stem.items()}
        for loc, e in energy.items():
            if loc not in listed:
                assert e == 0.0, f"murmur heard at unlisted {loc} of {m['Patient ID']}"
            elif loc != loudest:
                assert 0 < e < energy[loudest], (m["Patient ID"], loc, energy)
        # in the mixture: a loud, not-low-pitched murmur shows in its band at its site and not elsewhere
        if m["Systolic murmur grading"] == "III/VI" and m["Systolic murmur pitch"] != "Low":
            lo, hi = S._PITCH_HZ[m["Systolic murmur pitch"]]
            sos = ss.butter(4, [0.8 * lo, 1.5 * hi], btype="band", fs=SR, output="sos")
            band = {r.meta["Recording location"]: np.mean(ss.sosfilt(sos, S.render(r, clean=True)) ** 2) for r in recs}
            for loc in set(band) - set(listed):
                assert band[loudest] > 2 * band[loc], (m["Patient ID"], band)
                checked_mixture += 1
    assert checked_mixture >= 1


def _rate_from_envelope(x: np.ndarray, sr: int) -> float:
    """Breaths/min from the autocorrelation of the 150-1000 Hz amplitude envelope."""
    e = ss.sosfiltfilt(ss.butter(4, [150, 1000], btype="band", fs=sr, output="sos"), x) ** 2
    hop = int(0.05 * sr)
    env = np.sqrt(e[: e.size // hop * hop].reshape(-1, hop).mean(1))
    env = np.convolve(env, np.ones(6) / 6, "same")
    env -= env.mean()
    ac = np.correlate(env, env, "full")[env.size - 1:]
    lo, hi = int(60 / 40 / 0.05), int(60 / 13 / 0.05)
    return 60.0 / ((lo + int(np.argmax(ac[lo:hi]))) * 0.05)


def test_respiratory_rate_recoverable_from_envelope(corpus):
    """With ≥2 full breaths in the window (14-26 /min), the envelope period gives the labelled rate."""
    recs = [r for r in corpus if r.meta["modality"] == "lung" and 14 <= r.labels["respiratory_rate"] <= 26][:30]
    assert len(recs) >= 15
    err = np.array([abs(_rate_from_envelope(S.render(r, clean=True), SR) - r.labels["respiratory_rate"])
                    for r in recs])
    assert np.median(err) < 1.5 and np.mean(err < 3.0) >= 0.9, np.round(err, 1)


def test_heart_rate_field_matches_beats(corpus):
    recs = [r for r in corpus if r.meta["modality"] == "heart"][:12]
    for r in recs:
        heart = np.abs(S.render_stems(r)["heart"])
        hop = int(0.005 * SR)
        env = heart[: heart.size // hop * hop].reshape(-1, hop).max(1)
        env -= env.mean()
        ac = np.correlate(env, env, "full")[env.size - 1:]
        lo, hi = int(60 / 160 / 0.005), int(60 / 45 / 0.005)
        bpm = 60.0 / ((lo + int(np.argmax(ac[lo:hi]))) * 0.005)
        assert abs(bpm - float(r.meta["Heart rate"])) < 0.08 * float(r.meta["Heart rate"]), (r.record_id, bpm)


def _impulsiveness(x: np.ndarray) -> float:
    """Kurtosis of the >150 Hz signal after dividing out its 50 ms envelope: transients raise it."""
    y = ss.sosfilt(ss.butter(4, 150, btype="high", fs=SR, output="sos"), x)
    local = np.sqrt(np.convolve(y ** 2, np.ones(800) / 800, "same")) + 1e-9
    return float(np.mean((y / local) ** 4))


def _tonality(x: np.ndarray) -> float:
    """How far spectral peaks stand above the smoothed spectrum (80-1500 Hz), 90th percentile over frames."""
    f, _, z = ss.stft(x, fs=SR, nperseg=2048, noverlap=1536)
    logp = np.log(np.abs(z[(f >= 80) & (f <= 1500)]) ** 2 + 1e-20)
    return float(np.percentile((logp - median_filter(logp, size=(15, 1), mode="nearest")).max(0), 90))


@pytest.mark.parametrize("finding,feature", [("crackles", _impulsiveness), ("wheezes", _tonality)])
def test_adventitious_sounds_change_the_signal(corpus, rendered, finding, feature):
    lung = [r for r in corpus if r.meta["modality"] == "lung"][:64]
    # paired: the same recording with the finding switched off (all other components stay identical)
    positives = [r for r in lung if r.labels[finding]][:10]
    for r in positives:
        without = dataclasses.replace(r, params={**r.params, finding: 0})
        assert feature(S.render(r, clean=True)) > feature(S.render(without, clean=True)), r.record_id
    # across subjects, under the full recording chain
    y = [r.labels[finding] for r in lung]
    auc = roc_auc_score(y, [feature(rendered[r.record_id]) for r in lung])
    assert auc > 0.75, f"{finding}: a simple {feature.__name__} feature gives AUROC {auc:.2f}"


def test_rms_alone_does_not_give_the_labels(corpus, rendered):
    """Level is a nuisance: a model must hear the finding, not the loudness."""
    for key in ("murmur", "crackles", "wheezes"):
        recs = [r for r in corpus if r.labels[key] is not None]
        y = [r.labels[key] for r in recs]
        rms = [float(np.sqrt(np.mean(rendered[r.record_id].astype(np.float64) ** 2))) for r in recs]
        auc = roc_auc_score(y, rms)
        assert len(recs) >= 120 and max(auc, 1 - auc) < 0.85, f"{key}: RMS energy gives AUROC {auc:.2f}"


# --- writing ----------------------------------------------------------------------------------------


def test_write_corpus_manifest_and_resume(tmp_path, monkeypatch):
    recs = S.generate(1, 1, 1, seed=0, seconds=2.0)
    manifest = S.write_corpus(tmp_path, recs)
    rows = _rows(manifest)
    with open(manifest, newline="") as f:
        assert next(csv.reader(f)) == list(S.MANIFEST_COLUMNS)
    assert [row["record_id"] for row in rows] == [r.record_id for r in recs]
    for row, r in zip(rows, recs):
        x, sr = sf.read(tmp_path / row["audio_path"], dtype="float32")
        assert sr == r.sample_rate and sf.info(tmp_path / row["audio_path"]).subtype == "PCM_16"
        assert np.abs(x - r.audio).max() <= 1.5 / 32767
        for k in ("murmur", "crackles", "wheezes"):
            assert row[k] == ("" if r.labels[k] is None else str(r.labels[k]))
        assert all(row[k] == v for k, v in r.meta.items())
    mtimes = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*.wav")}

    def no_render(rec, clean=False):
        raise AssertionError(f"{rec.record_id} re-rendered although its file is current")

    monkeypatch.setattr(S, "render", no_render)
    S.write_corpus(tmp_path, recs)  # everything current: nothing is rendered or rewritten
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*.wav")} == mtimes
    monkeypatch.undo()

    # a file from other parameters under the same name is stale and gets rewritten
    changed = dataclasses.replace(recs[0], params={**recs[0].params, "gain_db": recs[0].params["gain_db"] + 6})
    S.write_corpus(tmp_path, [changed])
    x, _ = sf.read(tmp_path / changed.meta["audio_path"], dtype="float32")
    assert np.abs(x - changed.audio).max() <= 1.5 / 32767 and np.abs(x - recs[0].audio).max() > 0.01
    assert len(_rows(tmp_path / "manifest.csv")) == 1


def test_write_corpus_rejects_duplicate_ids(tmp_path):
    recs = S.generate(1, 0, 0, seed=0, seconds=1.0)
    with pytest.raises(ValueError, match="duplicate record_id"):
        S.write_corpus(tmp_path, recs + recs[:1])


def test_build_defaults_reach_demo_size(tmp_path):
    defaults = {k: v.default for k, v in inspect.signature(S.build).parameters.items()}
    recs = S.generate(defaults["n_heart"], defaults["n_lung"], defaults["n_cough"], seed=0)  # metadata only
    assert len(recs) >= 600
    manifest = S.build(tmp_path, n_heart=1, n_lung=1, n_cough=1, seed=0, seconds=1.0, progress=False)
    assert len(_rows(manifest)) == len(S.generate(1, 1, 1, seed=0, seconds=1.0))


def test_slow_breathing_leaves_a_silent_end_expiratory_pause():
    """Expiratory flow decays with the subject's time constant, not with the period: at 10 breaths/min
    a large part of each cycle is silent, at 35 almost none (a pause that scaled with the period made
    every rate look alike to any pooled feature)."""
    sr, n = 1000, 60_000

    def silent_fraction(rate, tau=0.5):
        cycles = S._breath_cycles(np.random.default_rng(0), rate, 1.6, n / sr)
        insp, expi, _ = S._breath_envelopes(cycles, n, sr, 0.4, tau)
        env = insp + expi
        return float(np.mean(env < 0.05 * env.max()))

    slow, fast = silent_fraction(10), silent_fraction(35)
    assert slow > 0.25 and fast < 0.1
    assert silent_fraction(10, tau=1.5) < slow  # obstruction (a long time constant) fills the pause
