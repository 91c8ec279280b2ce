"""Figures for papers and reports: ROC curves per task, baseline-vs-aligned bars, 2-D embedding maps.

    acula figures bars runs/baseline/results.csv runs/aligned/results.csv --labels baseline,AcuLa --out bars.png
    acula figures map emb.npz --manifest corpus/manifest.csv --label-column murmur --out map.png

Everything renders with matplotlib's Agg backend (no display needed) and is written atomically, so a
half-written PNG never replaces a good one. Layout is fixed per panel (`PANEL_INCHES` at `DPI`), which
keeps figures of different runs the same size.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from .._io import atomic_path
from .probe import LinearProbe

DPI = 120
PANEL_INCHES = 3.2
SMALL_MAP = 2000  # points; t-SNE runs single-threaded below this
COLORS = ["#7a9cc6", "#d9822b", "#5a9e6f", "#b25c8f", "#8c7b6b", "#c9b037"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_png(fig, path: str | os.PathLike) -> Path:
    """Write `fig` atomically as PNG and close it."""
    plt = _pyplot()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)
    plt.close(fig)
    return path


def _grid(n: int, max_cols: int = 4) -> tuple[int, int]:
    cols = min(max_cols, max(1, n))
    return math.ceil(n / cols), cols


# ------------------------------------------------------------------------------------------------ ROC curves


def probe_scores(X_train, y_train, X_val, y_val, X_test, seed: int = 0, **probe_options) -> np.ndarray:
    """Test-set class probabilities of a `LinearProbe` fitted as in the benchmark (for ROC curves)."""
    probe = LinearProbe(task="classification", seed=seed, **probe_options).fit(X_train, y_train, X_val, y_val)
    return probe.predict_proba(X_test)


def roc_points(y: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, str]:
    """(fpr, tpr, AUROC, kind). `score` is (N,) for binary, (N, 2) or (N, C) probabilities.

    With more than two classes the curve is the micro-average over one-vs-rest problems and the AUROC
    the macro average (the benchmark's metric), as the legend says.
    """
    from sklearn.metrics import roc_auc_score, roc_curve

    y = np.asarray(y)
    score = np.asarray(score, dtype=np.float64)
    if score.ndim == 2 and score.shape[1] == 2:
        score = score[:, 1]
    if score.ndim == 1:
        if len(np.unique(y)) != 2:
            raise ValueError(f"binary ROC needs exactly two classes in y, got {np.unique(y).tolist()}")
        fpr, tpr, _ = roc_curve(y, score)
        return fpr, tpr, float(roc_auc_score(y, score)), "binary"
    if len(y) != len(score):
        raise ValueError(f"{len(y)} labels but {len(score)} score rows")
    classes = np.arange(score.shape[1])
    onehot = (np.asarray(y)[:, None] == classes[None, :]).astype(int)
    fpr, tpr, _ = roc_curve(onehot.ravel(), score.ravel())
    present = [c for c in classes if 0 < onehot[:, c].sum() < len(y)]
    if len(present) < 2:
        raise ValueError(f"multi-class ROC needs at least two classes in y, got {np.unique(y).tolist()}")
    # macro one-vs-rest, as the benchmark's AUROC; per class, so scores need not be probabilities
    auc = float(np.mean([roc_auc_score(onehot[:, c], score[:, c]) for c in present]))
    return fpr, tpr, auc, "micro-average curve, macro AUROC"


def roc_figure(curves: Mapping[str, Mapping[str, tuple[np.ndarray, np.ndarray]]], path: str | os.PathLike,
               title: str | None = None, max_cols: int = 4) -> Path:
    """One panel per task, one curve per model: `curves[task][model] = (y_true, score)`."""
    plt = _pyplot()
    if not curves:
        raise ValueError("no ROC curves to draw")
    rows, cols = _grid(len(curves), max_cols)
    fig, axes = plt.subplots(rows, cols, figsize=(PANEL_INCHES * cols, PANEL_INCHES * rows), squeeze=False)
    for ax, (task, models) in zip(axes.flat, curves.items()):
        kinds = set()
        for color, (model, (y, score)) in zip(COLORS * 10, models.items()):
            fpr, tpr, auc, kind = roc_points(y, score)
            kinds.add(kind)
            ax.plot(fpr, tpr, color=color, lw=1.6, label=f"{model} (AUROC {auc:.3f})")
        ax.plot([0, 1], [0, 1], color="k", lw=0.6, ls=":")
        ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="false positive rate", ylabel="true positive rate")
        ax.set_title(task + ("" if kinds == {"binary"} else "\n(micro-avg curve, macro AUROC)"), fontsize=9)
        ax.legend(loc="lower right", fontsize=7, frameon=False)
        ax.set_aspect("equal")
    for ax in list(axes.flat)[len(curves):]:
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_png(fig, path)


# ------------------------------------------------------------------------------------------------ bars


def bar_figure(rows: Sequence[Mapping], path: str | os.PathLike, labels: Sequence[str] = ("baseline", "aligned"),
               title: str | None = None) -> Path:
    """Grouped bars with ± std error bars, one panel per metric.

    `rows`: dicts with `task`, `metric` and, per model i of `labels`, `mean{i}` and `std{i}` (i = 0, 1, ...).
    """
    plt = _pyplot()
    if not rows:
        raise ValueError("no results to draw")
    metrics = list(dict.fromkeys(r["metric"] for r in rows))
    counts = [sum(r["metric"] == m for r in rows) for m in metrics]
    width_units = [max(2, c) for c in counts]
    fig, axes = plt.subplots(1, len(metrics), squeeze=False, gridspec_kw={"width_ratios": width_units},
                             figsize=(max(PANEL_INCHES, 0.9 * sum(width_units) + 1.2), PANEL_INCHES + 0.6))
    k = len(labels)
    bar_w = 0.8 / k
    for ax, metric in zip(axes[0], metrics):
        sub = [r for r in rows if r["metric"] == metric]
        x = np.arange(len(sub))
        for i, (label, color) in enumerate(zip(labels, COLORS)):
            means = [float(r[f"mean{i}"]) for r in sub]
            stds = [float(r.get(f"std{i}") or 0.0) for r in sub]
            ax.bar(x + (i - (k - 1) / 2) * bar_w, means, bar_w, yerr=stds, capsize=3, color=color, label=label,
                   error_kw={"lw": 0.8})
        ax.set_xticks(x, [str(r["task"]) for r in sub], rotation=45 if len(sub) > 4 else 0,
                      ha="right" if len(sub) > 4 else "center", fontsize=8)
        higher = metric != "MAE"
        ax.set_ylabel(f"{metric} ({'higher' if higher else 'lower'} is better)", fontsize=9)
        if metric == "AUROC":
            lows = [float(r[f"mean{i}"]) - float(r.get(f"std{i}") or 0) for r in sub for i in range(k)]
            ax.set_ylim(min(0.4, min(lows) - 0.05), 1.0)
            ax.axhline(0.5, color="k", lw=0.6, ls=":")
        ax.grid(axis="y", lw=0.3, alpha=0.6)
        ax.set_axisbelow(True)
    axes[0][0].legend(fontsize=8, frameon=False, loc="upper left")
    fig.suptitle(title or "mean ± std over seeds", fontsize=10)
    fig.tight_layout()
    return save_png(fig, path)


def bars_from_results(results: Sequence[str | os.PathLike], path: str | os.PathLike,
                      labels: Sequence[str] | None = None, title: str | None = None) -> Path:
    """`bar_figure` from `acula bench` / `acula finetune` results.csv files (tasks that ran in all of them)."""
    from .results import read_results

    if len(results) < 1:
        raise ValueError("give at least one results.csv")
    labels = list(labels or [Path(p).parent.name or str(p) for p in results])
    if len(labels) != len(results):
        raise ValueError(f"{len(labels)} labels for {len(results)} results files")
    tables = [read_results(p) for p in results]
    rows = []
    for task, first in tables[0].items():
        runs = [t.get(task) for t in tables]
        if any(r is None or r["status"] != "ok" or not r["mean"] or r["metric"] != first["metric"] for r in runs):
            continue
        row = {"task": task, "metric": first["metric"]}
        for i, r in enumerate(runs):
            row[f"mean{i}"], row[f"std{i}"] = float(r["mean"]), float(r["std"] or 0.0)
        rows.append(row)
    if not rows:
        raise ValueError(f"no task ran successfully in all of {', '.join(map(str, results))}")
    return bar_figure(rows, path, labels, title)


# ------------------------------------------------------------------------------------------------ embedding map


def _is_continuous(labels: np.ndarray) -> bool:
    try:
        v = labels.astype(float)
    except (TypeError, ValueError):
        return False
    return bool(np.any(v != np.round(v)) or len(np.unique(v)) > 10)


def tsne_2d(X: np.ndarray, seed: int = 0, perplexity: float | None = None) -> np.ndarray:
    """2-D t-SNE (PCA to <= 50 dims first, the usual recipe for wide embeddings)."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2 or len(X) < 5 or not np.isfinite(X).all():
        raise ValueError(f"embedding map needs a finite (N >= 5, D) matrix, got shape {X.shape}")
    X = (X - X.mean(0)) / (X.std(0) + 1e-8)
    if X.shape[1] > 50:
        X = PCA(n_components=min(50, len(X) - 1), random_state=seed).fit_transform(X)
    perplexity = perplexity or float(min(30.0, (len(X) - 1) / 3))
    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed)
    # for small maps, OpenMP threads spin-waiting on a busy machine cost far more than they save
    with threadpool_limits(1 if len(X) < SMALL_MAP else None):
        return tsne.fit_transform(X)


def embedding_map(X: np.ndarray, labels: Sequence, path: str | os.PathLike, title: str | None = None,
                  class_names: Mapping | None = None, seed: int = 0, perplexity: float | None = None,
                  label_name: str = "label") -> Path:
    """t-SNE map of embeddings coloured by label: classes get a legend, continuous targets a colour bar."""
    plt = _pyplot()
    labels = np.asarray(labels)
    if len(labels) != len(X):
        raise ValueError(f"{len(X)} embeddings but {len(labels)} labels")
    xy = tsne_2d(X, seed, perplexity)
    fig, ax = plt.subplots(figsize=(PANEL_INCHES * 1.6, PANEL_INCHES * 1.4))
    if _is_continuous(labels):
        sc = ax.scatter(xy[:, 0], xy[:, 1], c=labels.astype(float), cmap="viridis", s=12, lw=0)
        fig.colorbar(sc, ax=ax, label=label_name)
    else:
        classes = sorted(np.unique(labels), key=str)
        cmap = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20")
        for i, c in enumerate(classes):
            m = labels == c
            name = (class_names or {}).get(c, c)
            ax.scatter(xy[m, 0], xy[m, 1], s=12, lw=0, color=cmap(i % cmap.N), label=f"{name} ({int(m.sum())})")
        ax.legend(title=label_name, fontsize=7, title_fontsize=8, frameon=False, markerscale=1.5,
                  loc="center left", bbox_to_anchor=(1.0, 0.5))
    ax.set(xticks=[], yticks=[], xlabel="t-SNE 1", ylabel="t-SNE 2")
    ax.set_title(title or f"t-SNE of {len(X)} embeddings", fontsize=10)
    fig.tight_layout()
    return save_png(fig, path)

