"""Scores: probes on the held-out subjects, zero-shot, CKA diagnostics and paired comparisons."""

from __future__ import annotations

import time

import numpy as np
import torch

from ...data.splits import train_val_split
from ...evaluate import zeroshot as zs
from ...evaluate.bench import pooled_auroc
from ...evaluate.probe import LinearProbe, auroc

from .config import ARMS, ARM_NAMES, ExperimentConfig
from .corpus import Corpus, Prepared
from .training import heads


# ---- evaluation ---------------------------------------------------------------------------------------------


def probe(X: np.ndarray, c: Corpus, task: str, cfg: ExperimentConfig) -> dict:
    """OPERA's probe (one subject-grouped train/val split, a head per probe seed) on train subjects, tested on
    the held-out ones; plus the pooled per-patient score where the task has one."""
    y = c.labels[task]
    tr = np.flatnonzero((y >= 0) & ~c.heldout)
    te = np.flatnonzero((y >= 0) & c.heldout)
    missing = set(y[tr].tolist()) - set(y[te].tolist())
    if missing:
        raise ValueError(f"{task}: the held-out subjects have no recording of class(es) "
                         f"{sorted(c.classes[task][i] for i in missing)}; hold out more (--heldout-fraction) or "
                         "keep more recordings per subject")
    a, b = train_val_split(len(tr), 0.2, 1337, groups=c.subjects[tr], stratify=y[tr])
    values, pooled = [], []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a linear head on 1024-d features: a second thread only adds overhead
    try:
        for s in cfg.probe_seeds:
            p = LinearProbe(task="classification", seed=s, lr=cfg.probe_lr, epochs=cfg.probe_epochs)
            p.fit(X[tr[a]], y[tr[a]], X[tr[b]], y[tr[b]])
            proba = p.predict_proba(X[te])
            values.append(auroc(np.searchsorted(p.classes_, y[te]), proba))
            if task in c.pool:
                ids, plab, how = c.pool[task]
                pooled.append(pooled_auroc(proba, ids[te], plab[te], how))
    finally:
        torch.set_num_threads(threads)
    out = {"mean": float(np.mean(values)), "std": float(np.std(values)), "values": values,
           "n_train": int(len(tr)), "n_test": int(len(te)), "n_test_subjects": int(len(set(c.subjects[te])))}
    if pooled:
        out["pooled"] = {"mean": float(np.mean(pooled)), "std": float(np.std(pooled)), "values": pooled}
    return out


def zero_shot(audio: np.ndarray, text_train: np.ndarray, train_rows: np.ndarray, c: Corpus, task: str,
              prompts: list[np.ndarray], mode: str = "calibrated") -> float:
    """Mean AUROC over prompt sets on the held-out recordings; the calibration is fitted on this corpus's
    alignment pairs only (train subjects and their reports, never a prompt or a held-out clip)."""
    cal = zs.Calibration.fit(audio[train_rows], text_train) if mode == "calibrated" else None
    y = c.labels[task]
    te = np.flatnonzero((y >= 0) & c.heldout)
    return float(np.mean([zs.classify(zs.similarity(audio[te], p, mode, cal), y[te])["auroc"] for p in prompts]))


def cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA, unbiased HSIC estimator (the training loss's), of two paired matrices."""
    from ...align.losses import linear_cka_debiased

    return float(linear_cka_debiased(torch.from_numpy(np.asarray(x, np.float32)),
                                     torch.from_numpy(np.asarray(y, np.float32))))


def diagnose(f: np.ndarray, corpora: list[Corpus], offset: np.ndarray, report_emb: dict) -> dict:
    """Why alignment helps or not, per corpus: how much the encoder's features share the reports' geometry
    (CKA with the teacher's report embeddings) on the alignment subjects and on the held-out ones, and how
    much they share each task's label geometry on the held-out subjects. Held-out reports are embedded for
    this measurement only; no model ever trains on them."""
    out = {}
    for k, c in enumerate(corpora):
        X = f[offset[k]:offset[k + 1]]
        where = {p: i for i, p in enumerate(c.paths)}
        d = {}
        for part, rows in (("train", c.report_rows), ("heldout", c.heldout_reports)):
            idx = np.array([where[p] for p in rows], dtype=int)
            if len(idx) >= 4:
                d[f"features_vs_reports_{part}"] = cka(X[idx], report_emb[c.spec.dataset][part])
        for t, y in c.labels.items():
            te = np.flatnonzero((y >= 0) & c.heldout)
            d[f"features_vs_{t}_heldout"] = cka(X[te], np.eye(int(y.max()) + 1, dtype=np.float32)[y[te]])
        out[c.spec.dataset] = d
    return out


def teacher_side(corpora: list[Corpus], report_emb: dict) -> dict:
    """CKA of the report embeddings with each task's one-hot labels, on the alignment subjects: what the
    reports can teach about each task at best (1 = the reports' geometry is the labels')."""
    out = {}
    for c in corpora:
        where = {p: i for i, p in enumerate(c.paths)}
        idx = np.array([where[p] for p in c.report_rows], dtype=int)
        out[c.spec.dataset] = {t: cka(report_emb[c.spec.dataset]["train"], np.eye(int(y.max()) + 1, dtype=np.float32)
                                      [np.maximum(y[idx], 0)] * (y[idx] >= 0)[:, None])
                               for t, y in c.labels.items()}
    return out


def paired(a: list[float], b: list[float]) -> dict:
    """a - b per alignment seed, with a paired t-test (few seeds: read the per-seed values too)."""
    from scipy import stats

    d = np.asarray(a) - np.asarray(b)
    p = float(stats.ttest_rel(a, b).pvalue) if len(d) > 1 and np.std(d) > 0 else float("nan")
    return {"mean_diff": float(d.mean()), "per_seed": d.tolist(), "wins": int((d > 0).sum()), "p_paired_t": p}


def evaluate(results, zero, arm, seed, model, f, text, prep: Prepared, cfg, pool=None, log=print) -> None:
    """Probe every task on this arm's features (in `pool` when given: results then hold futures); zero-shot
    through the heads of a report-aligned arm (raw features to raw teacher embeddings for the initial encoder)."""
    t0 = time.time()
    offset, align_idx = prep.offset, prep.align_idx
    for k, c in enumerate(prep.corpora):
        X = f[offset[k]:offset[k + 1]]
        in_corpus = (align_idx >= offset[k]) & (align_idx < offset[k + 1])
        rows = align_idx[in_corpus] - offset[k]
        for t in c.spec.tasks:
            job = pool.submit(probe, X, c, t, cfg) if pool is not None else probe(X, c, t, cfg)
            results.setdefault(arm, {}).setdefault(t, {})[seed] = job
            if prep.prompts.get(t) is None or (model is None and arm != "initial"):
                continue
            if model is None:
                a, tt, p = X, text[in_corpus], prep.prompts[t]
            else:
                a = heads(model, X, model.audio_projection)
                tt = heads(model, text[in_corpus], model.language_projection)
                p = [heads(model, q, model.language_projection) for q in prep.prompts[t]]
            zero.setdefault(arm, {}).setdefault(t, {})[seed] = zero_shot(a, tt, rows, c, t, p)
    if pool is None:
        log(f"  {ARM_NAMES[arm]}: " + ", ".join(f"{t} {results[arm][t][seed]['mean']:.3f}" for c in prep.corpora
                                                for t in c.spec.tasks) + f" ({time.time() - t0:.0f} s)")


def resolved(results: dict, wait: bool) -> dict:
    """arm -> task -> {seed: probe result}: futures resolved (waited for with `wait`, else only the done ones)."""
    out: dict = {}
    for arm, per_task in results.items():
        for t, by_seed in per_task.items():
            for seed, r in by_seed.items():
                if hasattr(r, "result"):
                    if not (wait or r.done()):
                        continue
                    r = r.result()
                out.setdefault(arm, {}).setdefault(t, {})[seed] = r
    return out


# paired comparisons reported per task: (arm, against)
COMPARE = (("aligned", "baseline"), ("aligned_masked", "baseline"), ("aligned_masked_tuned", "baseline"),
           ("published", "baseline"), ("label_cka", "baseline"), ("aligned_masked", "aligned"),
           ("aligned_masked_tuned", "aligned"))


def summarise(results: dict, zero: dict, corpora: list[Corpus]) -> dict:
    tasks = []
    for c in corpora:
        for t in c.spec.tasks:
            for level in ("recording", "patient"):
                entry = {"task": t if level == "recording" else f"{t}@patient", "dataset": c.spec.dataset,
                         "metric": "AUROC"}
                for arm in ARMS:
                    runs = results.get(arm, {}).get(t, {})
                    seeds = sorted(runs)
                    vals = [runs[s]["mean"] if level == "recording" else runs[s].get("pooled", {}).get("mean")
                            for s in seeds]
                    if not vals or vals[0] is None:
                        continue
                    entry[arm] = {"mean": float(np.mean(vals)), "std": float(np.std(vals)), "per_seed": vals,
                                  "seeds": seeds, "probe_seed_std": float(np.mean([runs[s]["std"] for s in seeds]))}
                    r0 = runs[seeds[0]]
                    entry["n_test"], entry["n_test_subjects"] = r0["n_test"], r0["n_test_subjects"]
                if "baseline" not in entry:
                    continue
                for arm, other in COMPARE:
                    if arm in entry and other in entry:
                        common = sorted(set(entry[arm]["seeds"]) & set(entry[other]["seeds"]))
                        if common:
                            va = [entry[arm]["per_seed"][entry[arm]["seeds"].index(s)] for s in common]
                            vb = [entry[other]["per_seed"][entry[other]["seeds"].index(s)] for s in common]
                            entry[f"{arm}_vs_{other}"] = paired(va, vb)
                tasks.append(entry)
    zs_rows = []
    for arm, per_task in zero.items():
        for t, by_seed in per_task.items():
            vals = [by_seed[s] for s in sorted(by_seed)]
            zs_rows.append({"task": t, "arm": arm, "mean": float(np.mean(vals)), "std": float(np.std(vals)),
                            "per_seed": vals})
    wins = sum(1 for e in tasks if e.get("aligned_vs_baseline", {}).get("mean_diff", 0) > 0)
    return {"tasks": tasks, "zero_shot": zs_rows, "aligned_wins": wins, "n_tasks": len(tasks)}
