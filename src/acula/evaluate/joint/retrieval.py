"""Audio <-> report retrieval in the joint space of an aligned checkpoint.

    acula retrieve --checkpoint runs/align/acula_final.pt --manifest test.csv --out runs/ret

Every recording of the manifest is a query and every report a candidate (and the other way round).
A candidate is relevant when its report is the query's own report *or an identical string*: templated
reports repeat, and ranking one copy of the right text above another is no error. Metrics, per direction:

* R@k: fraction of queries with at least one relevant candidate among the top k.
* mAP@10: mean over queries of AP@10 = (1 / min(R, 10)) * sum_{i <= 10} P(i) * rel(i), where R is the
  query's number of relevant candidates, P(i) the precision of the top i and rel(i) whether rank i is
  relevant. With one relevant candidate it is 1 / rank (0 beyond rank 10).
* median rank of the first relevant candidate, and the chance level of each R@k (random ranking).

Ties are broken against the query (irrelevant candidates first), so a collapsed model whose scores are
all equal gets chance-level numbers, not perfect ones. Scores come from `similarity.similarity`:
calibrated (Procrustes map, for CKA-trained models) or raw cosine (docs/zeroshot.md).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..._io import write_json, write_text
from .model import project_texts
from .similarity import similarity
from .space import JointSpaceConfig, kept_rows, open_joint_space

KS = (1, 5, 10)
MAP_K = 10


def relevance(query_texts: Sequence[str], candidate_texts: Sequence[str]) -> np.ndarray:
    """(Q, G) bool: identical strings (after stripping outer whitespace) are relevant to each other."""
    q = np.array([t.strip() for t in query_texts], dtype=object)
    g = np.array([t.strip() for t in candidate_texts], dtype=object)
    return q[:, None] == g[None, :]


def ranked_relevance(sim: np.ndarray, rel: np.ndarray) -> np.ndarray:
    """Relevance of each query's candidates in ranked order (best first); ties rank irrelevant first."""
    sim, rel = np.asarray(sim, np.float64), np.asarray(rel, bool)
    if sim.shape != rel.shape or sim.ndim != 2:
        raise ValueError(f"similarity {sim.shape} and relevance {rel.shape} must be the same (Q, G) shape")
    if not np.isfinite(sim).all():
        raise ValueError("similarity matrix contains NaN or Inf")
    empty = np.flatnonzero(~rel.any(1))
    if empty.size:
        raise ValueError(f"{empty.size} queries have no relevant candidate (e.g. query {int(empty[0])})")
    order = np.lexsort((rel, -sim), axis=1)  # primary: score descending; then False (irrelevant) first
    return np.take_along_axis(rel, order, axis=1)


def recall_at_k(sim: np.ndarray, rel: np.ndarray, k: int) -> float:
    return float(ranked_relevance(sim, rel)[:, :k].any(1).mean())


def average_precision_at_k(sim: np.ndarray, rel: np.ndarray, k: int = MAP_K) -> np.ndarray:
    """(Q,) AP@k per query (see the module docstring)."""
    ranked = ranked_relevance(sim, rel)
    hits = ranked[:, :k].astype(np.float64)
    precision = np.cumsum(hits, axis=1) / np.arange(1, hits.shape[1] + 1)
    n_rel = np.minimum(rel.sum(1), k)
    return (precision * hits).sum(1) / n_rel


def chance_recall_at_k(rel: np.ndarray, k: int) -> float:
    """Expected R@k of a uniformly random ranking: 1 - C(G - r, k) / C(G, k), averaged over queries."""
    rel = np.asarray(rel, bool)
    g = rel.shape[1]
    r = rel.sum(1).astype(np.float64)
    miss = np.ones_like(r)
    for i in range(min(k, g)):
        miss *= np.clip((g - r - i) / (g - i), 0.0, None)
    return float((1.0 - miss).mean())


def retrieval_metrics(sim: np.ndarray, rel: np.ndarray, ks: Sequence[int] = KS, map_k: int = MAP_K) -> dict:
    """R@k, mAP@map_k, median rank and chance levels for one direction (rows are queries)."""
    ranked = ranked_relevance(sim, rel)
    first = ranked.argmax(1) + 1  # 1-based rank of the first relevant candidate
    out = {f"R@{k}": float(ranked[:, :k].any(1).mean()) for k in ks}
    out[f"mAP@{map_k}"] = float(average_precision_at_k(sim, rel, map_k).mean())
    out["median_rank"] = float(np.median(first))
    out["chance"] = {f"R@{k}": chance_recall_at_k(rel, k) for k in ks}
    out["n_queries"], out["n_candidates"] = int(sim.shape[0]), int(sim.shape[1])
    return out


def evaluate(audio: np.ndarray, text: np.ndarray, reports: Sequence[str], mode: str = "calibrated",
             calibration=None) -> dict[str, dict]:
    """Both directions for paired rows: audio i belongs with report i (and with identical reports)."""
    sim = similarity(audio, text, mode, calibration)
    rel = relevance(reports, reports)
    return {"audio_to_text": retrieval_metrics(sim, rel), "text_to_audio": retrieval_metrics(sim.T, rel.T)}


def run_retrieval(checkpoint: str | os.PathLike, manifest: str | os.PathLike, out: str | os.PathLike,
                  text_column: str = "Gen_Report", config: JointSpaceConfig | None = None, **options: Any) -> dict:
    """Retrieval on `manifest` (audio_path + `text_column`); writes retrieval.json / .csv to `out`.

    `options` are `JointSpaceConfig` fields, overriding `config`.
    """
    from ...datasets.manifest import read_manifest

    cfg = JointSpaceConfig.of(config, **options)
    out = Path(out)
    rows = read_manifest(manifest, required=("audio_path", text_column))
    if len(rows) < 2:
        raise ValueError(f"{manifest}: retrieval needs at least 2 recordings, got {len(rows)}")
    paths = [r["audio_path"] for r in rows]
    space = open_joint_space(checkpoint, paths, out, cfg)
    emb, cal = space.audio, space.calibration
    reports = [rows[i][text_column] for i in kept_rows(paths, emb.paths)]
    if len(reports) < 2:
        raise ValueError(f"{manifest}: only {len(reports)} recordings could be embedded")
    text = project_texts(space.model, space.teacher, reports, space.cache_dir)
    results = {m: evaluate(emb.embeddings, text, reports, m, cal) for m in cfg.similarities}
    report = {
        "checkpoint": str(checkpoint), "manifest": str(manifest), "text_column": text_column,
        "n": len(reports), "n_unique_reports": len(set(r.strip() for r in reports)),
        "policy": cfg.policy, "teacher": space.teacher.key, "calibration": cal.meta if cal is not None else None,
        "skipped": [{"audio_path": p, "reason": r} for p, r in zip(emb.skipped_paths, emb.skipped_reasons)],
        "results": results,
    }
    write_json(out / "retrieval.json", report)
    lines = ["similarity,direction,metric,value,chance,n_queries,n_candidates"]
    for m, by_dir in results.items():
        for direction, r in by_dir.items():
            for metric in [f"R@{k}" for k in KS] + [f"mAP@{MAP_K}", "median_rank"]:
                chance = r["chance"].get(metric)
                lines.append(f"{m},{direction},{metric},{r[metric]:.4f},{'' if chance is None else f'{chance:.4f}'},"
                             f"{r['n_queries']},{r['n_candidates']}")
    write_text(out / "retrieval.csv", "\n".join(lines) + "\n")
    for m, by_dir in results.items():
        for direction, r in by_dir.items():
            cfg.log(f"retrieval [{m}] {direction.replace('_', ' ')}: R@1 {r['R@1']:.3f} "
                    f"(chance {r['chance']['R@1']:.3f}), R@5 {r['R@5']:.3f}, R@10 {r['R@10']:.3f}, "
                    f"mAP@10 {r['mAP@10']:.3f}, median rank {r['median_rank']:.0f} of {r['n_candidates']}")
    return report
