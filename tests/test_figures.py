"""Figures: each PNG is written, non-trivial, of the documented size, and fails clearly on bad input."""

import csv

import numpy as np
import pytest
from matplotlib.image import imread

from acula.evaluate.bench import RESULT_COLUMNS
from acula.evaluate.figures import (DPI, PANEL_INCHES, bar_figure, bars_from_results, embedding_map, probe_scores,
                                   roc_figure, roc_points)
from numerics import Shape, reorder_tol


def _check_png(path, width_in, height_in):
    assert path.is_file() and path.stat().st_size > 8_000  # a real drawing, not an empty canvas
    img = imread(path)
    assert abs(img.shape[0] - height_in * DPI) <= 1 and abs(img.shape[1] - width_in * DPI) <= 1
    assert img[..., :3].std() > 0.05  # not one flat colour
    assert not list(path.parent.glob(".*.tmp"))  # atomic write left no temporary behind


def _clusters(n=60, d=12, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    X = rng.normal(size=(n, d)) + 3.0 * np.eye(3, d)[y]
    return X.astype(np.float32), y


def test_roc_figure_from_probe_probabilities(tmp_path):
    X, y = _clusters(90)
    yb = (y == 0).astype(int)
    tr, va, te = np.arange(0, 50), np.arange(50, 65), np.arange(65, 90)
    proba = probe_scores(X[tr], yb[tr], X[va], yb[va], X[te], epochs=20, lr=1e-2)
    assert proba.shape == (25, 2)
    assert np.abs(proba.sum(1) - 1.0).max() <= reorder_tol(1.0, Shape(2, 2))  # a float32 softmax of 2 classes
    rng = np.random.default_rng(1)
    curves = {
        "binary task": {"probe": (yb[te], proba), "random": (yb[te], rng.uniform(size=25))},
        "three classes": {"scores": (y[te], np.eye(3)[y[te]] + rng.uniform(0, 1.5, size=(25, 3)))},
    }
    fpr, tpr, auc, kind = roc_points(yb[te], proba)
    assert kind == "binary" and auc > 0.75 and fpr[0] == 0 and tpr[-1] == 1
    assert roc_points(y[te], curves["three classes"]["scores"][1])[3].startswith("micro")
    path = roc_figure(curves, tmp_path / "roc.png", title="ROC")
    _check_png(path, 2 * PANEL_INCHES, PANEL_INCHES)
    with pytest.raises(ValueError, match="two classes"):
        roc_points(np.zeros(5, int), np.arange(5.0))


def _results(path, rows):
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=RESULT_COLUMNS)
        w.writeheader()
        for r in rows:
            w.writerow({c: r.get(c, "") for c in RESULT_COLUMNS})
    return path


def test_bars_baseline_vs_aligned_from_results_files(tmp_path):
    a = _results(tmp_path / "a.csv", [
        {"task": "T1", "metric": "AUROC", "mean": "0.61", "std": "0.02", "status": "ok"},
        {"task": "T7", "metric": "AUROC", "mean": "0.70", "std": "0.01", "status": "ok"},
        {"task": "T19", "metric": "MAE", "mean": "2.9", "std": "0.10", "status": "ok"},
        {"task": "T5", "metric": "AUROC", "status": "error", "error": "missing data"},
    ])
    b = _results(tmp_path / "b.csv", [
        {"task": "T7", "metric": "AUROC", "mean": "0.74", "std": "0.02", "status": "ok"},
        {"task": "T1", "metric": "AUROC", "mean": "0.66", "std": "0.03", "status": "ok"},
        {"task": "T19", "metric": "MAE", "mean": "2.5", "std": "0.20", "status": "ok"},
        {"task": "T5", "metric": "AUROC", "mean": "0.6", "std": "0.0", "status": "ok"},
    ])
    path = bars_from_results([a, b], tmp_path / "bars.png", labels=["baseline", "AcuLa"])
    # panels: AUROC with 2 tasks (T5 failed in A) and MAE with 1 (at least 2 width units each)
    _check_png(path, 0.9 * (2 + 2) + 1.2, PANEL_INCHES + 0.6)
    with pytest.raises(ValueError, match="labels"):
        bars_from_results([a, b], tmp_path / "x.png", labels=["one"])
    only_failed = _results(tmp_path / "c.csv", [{"task": "T5", "metric": "AUROC", "status": "error"}])
    with pytest.raises(ValueError, match="no task ran"):
        bars_from_results([only_failed], tmp_path / "x.png")
    with pytest.raises(ValueError, match="no results"):
        bar_figure([], tmp_path / "x.png")


def test_embedding_maps_for_classes_and_continuous_targets(tmp_path):
    X, y = _clusters(60)
    path = embedding_map(X, y, tmp_path / "map.png", class_names={0: "normal", 1: "murmur", 2: "other"},
                         label_name="murmur")
    _check_png(path, PANEL_INCHES * 1.6, PANEL_INCHES * 1.4)
    rr = 12.0 + 10 * np.random.default_rng(0).uniform(size=60)  # e.g. respiratory rate: a colour bar
    path = embedding_map(X, rr, tmp_path / "map_rr.png", label_name="respiratory rate")
    _check_png(path, PANEL_INCHES * 1.6, PANEL_INCHES * 1.4)
    with pytest.raises(ValueError, match="labels"):
        embedding_map(X, y[:10], tmp_path / "x.png")
    with pytest.raises(ValueError, match="finite"):
        embedding_map(X[:3], y[:3], tmp_path / "x.png")


def test_figures_command_line(tmp_path):
    from acula.extract import Embeddings

    X, y = _clusters(30)
    paths = [str(tmp_path / f"c{i}.wav") for i in range(30)]
    Embeddings(X, paths).save(tmp_path / "emb.npz")
    rows = [{"audio_path": f"c{i}.wav", "murmur": str(y[i]) if i % 5 else ""} for i in range(30)]  # 6 unlabelled
    _results(tmp_path / "r.csv", [{"task": "T1", "metric": "AUROC", "mean": "0.6", "std": "0.01", "status": "ok"}])
    with open(tmp_path / "m.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["audio_path", "murmur"])
        w.writeheader()
        w.writerows(rows)
    from acula.cli import build_parser

    parser = build_parser()
    for argv in (["figures", "map", str(tmp_path / "emb.npz"), "--manifest", str(tmp_path / "m.csv"),
                  "--label-column", "murmur", "--out", str(tmp_path / "map.png")],
                 ["figures", "bars", str(tmp_path / "r.csv"), "--out", str(tmp_path / "bars.png")]):
        args = parser.parse_args(argv)
        assert args.func(args) == 0
    _check_png(tmp_path / "map.png", PANEL_INCHES * 1.6, PANEL_INCHES * 1.4)
    assert (tmp_path / "bars.png").stat().st_size > 8_000
