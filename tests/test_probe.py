import numpy as np
import pytest

from acula.datasets.manifest import ManifestError, read_manifest, write_manifest
from acula.data.splits import subject_split
from acula.evaluate.probe import LinearProbe, auroc, probe_over_seeds


def _blobs(n=300, d=16, seed=0, sep=1.5):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    X = rng.normal(size=(n, d)).astype(np.float32)
    X[:, 0] += sep * (2 * y - 1)
    return X, y


def test_probe_learns_a_separable_task_and_is_seeded():
    X, y = _blobs()
    a = LinearProbe(lr=1e-2, seed=0).fit(X[:200], y[:200], X[200:250], y[200:250])
    b = LinearProbe(lr=1e-2, seed=0).fit(X[:200], y[:200], X[200:250], y[200:250])
    assert a.score(X[250:], y[250:]) > 0.85
    assert a.score(X[250:], y[250:]) == b.score(X[250:], y[250:])


def test_probe_on_noise_is_near_chance():
    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(400, 16)).astype(np.float32), rng.integers(0, 2, 400)
    r = probe_over_seeds(X[:300], y[:300], X[300:], y[300:], lr=1e-2)
    assert 0.35 < r["mean"] < 0.65 and len(r["values"]) == 5


def test_regression_probe_beats_predicting_the_mean():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(400, 8)).astype(np.float32)
    y = 20 + 5 * X[:, 0] + rng.normal(size=400)
    r = probe_over_seeds(X[:300], y[:300], X[300:], y[300:], task="regression", lr=1e-2)
    assert r["metric"] == "MAE" and r["mean"] < np.abs(y[300:] - y[:300].mean()).mean() * 0.6


def test_multiclass_auroc_and_errors():
    rng = np.random.default_rng(3)
    y = np.repeat([0, 1, 2], 20)
    p = np.eye(3)[y] * 0.8 + 0.2 * rng.random((60, 3))
    assert auroc(y, p / p.sum(1, keepdims=True)) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="both classes"):
        auroc(np.zeros(5), np.ones((5, 2)) / 2)
    with pytest.raises(ValueError, match="finite"):
        LinearProbe().fit(np.full((4, 2), np.nan), [0, 1, 0, 1], np.zeros((2, 2)), [0, 1])
    with pytest.raises(ValueError, match="at least 2 classes"):
        LinearProbe().fit(np.zeros((4, 2)), [1, 1, 1, 1], np.zeros((2, 2)), [1, 1])


def test_subject_split_is_disjoint_and_stratified():
    groups = np.repeat(np.arange(50), 4)
    labels = np.repeat(np.arange(50) % 2, 4)
    tr, te = subject_split(groups, 0.3, seed=0, labels=labels)
    assert not set(groups[tr]) & set(groups[te])
    assert 0.2 < len(te) / len(groups) < 0.4
    assert 0.3 < labels[te].mean() < 0.7


def test_manifest_errors_name_file_and_row(tmp_path):
    p = tmp_path / "m.csv"
    p.write_text("audio_path,Gen_Report\na.wav,report one\nb.wav,\n")
    with pytest.raises(ManifestError, match=r"m\.csv: row 3 has an empty 'Gen_Report'"):
        read_manifest(p, required=("audio_path", "Gen_Report"))
    p.write_text("path,Gen_Report\na.wav,x\n")
    with pytest.raises(ManifestError, match="missing column.*audio_path"):
        read_manifest(p)
    p.write_text("audio_path,Gen_Report\na.wav,x\na.wav,x\n")
    with pytest.raises(ManifestError, match="row 3 duplicates row 2"):
        read_manifest(p)
    p.write_bytes(b"audio_path,Gen_Report\na.wav,caf\xe9\n")
    with pytest.raises(ManifestError, match="line 2 is not valid UTF-8"):
        read_manifest(p)
    write_manifest(p, [{"audio_path": "sub dir/ü.wav", "Gen_Report": "ok"}])
    rows = read_manifest(p)
    assert rows[0]["audio_path"] == str(tmp_path / "sub dir" / "ü.wav")
