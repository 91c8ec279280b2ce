"""The downstream benchmark (OPERA's probe protocol) for any registered encoder; the command and the protocol are
described in `acula.cli.bench` (`acula bench --help`) and docs/bench.md."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

from .._io import sha256_text, write_json
from ..audio.io import AudioError
from ..audio.spec import InputSpec, pad_whole  # noqa: F401  (pad_whole: part of this module's API)
from ..data.splits import train_val_split
from ..encoders.base import AudioEncoder
from ..extract import Embeddings, embed_files
from ..features import as_spec, feature_key, weights_sha256
from .probe import LinearProbe, auroc
from .results import (HIGHER_IS_BETTER, RESULT_COLUMNS, SEED_COLUMNS, compare, csv_text,  # noqa: F401  (API)
                      error_row, fmt_mean_std, markdown, read_results, read_seed_values, seed_test, task_rows,
                      write_results)
from .tasks import InputPolicy, Task, TaskData, TaskError, csv_task  # noqa: F401  (InputPolicy, csv_task: API)



# --------------------------------------------------------------------------------------------------------
# features


def embed_task(encoder: AudioEncoder, paths: list[str], spec: InputSpec | None, batch_size: int = 32,
               device: str = "cpu", progress: bool = False) -> Embeddings:
    """A task's recordings through the encoder with the task's input (None: the encoder's default)."""
    return embed_files(encoder, paths, policy=spec, batch_size=batch_size, progress=progress, device=device)


def _relative(paths: list[str], root: str) -> list[str]:
    return [os.path.relpath(p, root) if root else p for p in paths]


def task_features(encoder: AudioEncoder, task: Task, data: TaskData, out: Path, checkpoint: str | None,
                  batch_size: int = 32, device: str = "cpu", progress: bool = False,
                  log: Callable[[str], None] = print,
                  memo: dict | None = None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(X of the embedded rows, their row indices in `data`, skip notes), cached in OUT/features/.

    `memo` maps (fingerprint, path) -> vector or skip reason across the tasks of one run, so recordings
    shared by several tasks (T5/T6, T13-T15, ...) are embedded once.
    """
    memo = {} if memo is None else memo
    spec = as_spec(encoder, task.input_policy(encoder.name))
    key = feature_key(encoder, spec, checkpoint)
    if ("weights",) not in memo:  # hashed once per run; also tells two random initialisations apart
        memo[("weights",)] = weights_sha256(encoder)
    key["weights_sha256"] = memo[("weights",)]
    rel = _relative(data.paths, data.root)
    files_sha = sha256_text("\n".join(rel))
    fp = sha256_text(json.dumps(key, sort_keys=True))[:16]
    cache = out / "features" / f"{task.id}-{fp}.npz"
    emb = None
    if cache.is_file():
        try:
            cached = Embeddings.load(cache)
        except (OSError, ValueError, KeyError) as e:
            log(f"  refusing cached features {cache}: unreadable ({e}); recomputing")
        else:
            stored = cached.config.get("key") or {}
            if stored != key:
                diff = sorted(k for k in set(key) | set(stored) if key.get(k) != stored.get(k))
                log(f"  refusing cached features {cache}: computed with another fingerprint (differs in: "
                    f"{', '.join(diff)}); recomputing, never mixing")
            elif cached.config.get("files_sha256") != files_sha:
                log(f"  refusing cached features {cache}: computed for another file list; recomputing")
            else:
                emb = cached
                log(f"  features: cached {cache.name}")
    if emb is None:
        todo = [p for p in data.paths if (fp, p) not in memo]
        t0 = time.time()
        if todo:
            new = embed_task(encoder, todo, spec, batch_size=batch_size, device=device, progress=progress)
            memo.update({(fp, p): v for p, v in zip(new.paths, new.embeddings)})
            memo.update({(fp, p): r for p, r in zip(new.skipped_paths, new.skipped_reasons)})
        got = [(p, r, memo[(fp, p)]) for p, r in zip(data.paths, rel)]
        kept = [(r, v) for _, r, v in got if isinstance(v, np.ndarray)]
        skipped = [(r, v) for _, r, v in got if not isinstance(v, np.ndarray)]
        vectors = np.stack([v for _, v in kept]) if kept else np.zeros((0, encoder.feature_dim), np.float32)
        emb = Embeddings(vectors.astype(np.float32), [r for r, _ in kept], [r for r, _ in skipped],
                         [str(v) for _, v in skipped], {"key": key, "files_sha256": files_sha, "task": task.id})
        emb.save(cache)
        log(f"  features: embedded {len(todo)} recordings in {time.time() - t0:.1f} s "
            f"({len(data) - len(todo)} reused from earlier tasks) -> {cache.name}")
    else:
        memo.update({(fp, p): v for p, v in zip((os.path.join(data.root, r) for r in emb.paths), emb.embeddings)})
    row_of = {p: i for i, p in enumerate(rel)}
    rows = np.array([row_of[p] for p in emb.paths], dtype=int)
    notes = []
    if emb.skipped_paths:
        notes.append(f"{len(emb.skipped_paths)} recordings could not be embedded and are left out "
                     f"(e.g. {emb.skipped_paths[0]}: {emb.skipped_reasons[0]})")
    return emb.embeddings, rows, notes


# --------------------------------------------------------------------------------------------------------
# probing

_PROBE_FIELDS = {f.name for f in dataclasses.fields(LinearProbe)}


def probe_options(task: Task, head: str, epochs: int | None) -> tuple[dict, list[str]]:
    """LinearProbe settings of this task. Protocol knobs the probe lacks are reported, not faked."""
    opts = dict(task=task.kind, head=head, l2=task.l2, epochs=epochs or task.epochs, batch_size=task.batch_size)
    missing = []
    for name, value, default in (("ckpt_every", task.ckpt_every, 1), ("patience", task.patience, None)):
        if value == default:
            continue
        if name in _PROBE_FIELDS:
            opts[name] = value
        else:
            missing.append(f"{name}={value}")
    notes = [f"protocol {' and '.join(missing)} not supported by LinearProbe: the best validation epoch is "
             "picked among all epochs, without early stopping"] if missing else []
    return opts, notes


def probe_task(task: Task, data: TaskData, X: np.ndarray, seeds: tuple[int, ...], head: str = "linear",
               epochs: int | None = None) -> dict:
    """Test metric per seed; for fold protocols the per-seed value is the mean over held-out folds."""
    opts, notes = probe_options(task, head, epochs)
    y = data.labels
    values, fold_std = [], []
    roc = task.metric == "AUROC"
    y_seen, scores = [], []  # the first seed's test probabilities, for ROC curves
    pooled = []
    if data.split is not None:
        tr, va, te = data.part("train"), data.part("val"), data.part("test")
        for s in seeds:
            p = LinearProbe(seed=s, **opts).fit(X[tr], y[tr], X[va], y[va])
            values.append(p.score(X[te], y[te]))
            if data.pool is not None:
                pooled.append(pooled_auroc(p.predict_proba(X[te]), data.pool[te], data.pool_labels[te], data.pool_how))
            if roc and not scores:
                y_seen, scores = [y[te]], [p.predict_proba(X[te])]
        n_train, n_val, n_test = len(tr), len(va), len(te)
    else:
        sizes = []
        for s in seeds:
            per_fold = []
            for held in data.folds:
                rest = np.setdiff1d(np.arange(len(data)), held)
                a, b = train_val_split(len(rest), task.fold_val_fraction, task.fold_val_seed,
                                       groups=data.subjects[rest])
                tr, va = rest[a], rest[b]
                p = LinearProbe(seed=s, **opts).fit(X[tr], y[tr], X[va], y[va])
                per_fold.append(p.score(X[held], y[held]))
                if roc and s == seeds[0]:  # held-out folds pooled
                    y_seen.append(y[held])
                    scores.append(p.predict_proba(X[held]))
                sizes.append((len(tr), len(va)))
            values.append(float(np.mean(per_fold)))
            fold_std.append(float(np.std(per_fold)))
        n_train = int(round(np.mean([a for a, _ in sizes])))
        n_val = int(round(np.mean([b for _, b in sizes])))
        n_test = int(sum(len(f) for f in data.folds))
    if data.pool is not None and data.split is None:
        notes.append("pooled score not computed: the task uses held-out folds")
    return {"metric": task.metric, "values": [float(v) for v in values], "fold_std": fold_std, "pooled": pooled,
            "n_pooled": len(set(data.pool[data.part("test")].tolist())) if pooled else 0,
            "mean": float(np.mean(values)), "std": float(np.std(values)), "n_train": n_train, "n_val": n_val,
            "n_test": n_test, "notes": notes,
            "roc": (np.concatenate(y_seen), np.concatenate(scores)) if scores else None}


def pooled_auroc(proba: np.ndarray, pool: np.ndarray, pool_labels: np.ndarray, how: str) -> float:
    """AUROC of one score per pool id (a patient): its recordings' positive-class probabilities combined."""
    ids, inverse = np.unique(pool, return_inverse=True)
    pos = proba[:, 1] if proba.shape[1] == 2 else None
    if pos is None:
        raise TaskError("a pooled score needs a binary task")
    combine = np.maximum.reduceat if how == "max" else np.add.reduceat
    order = np.argsort(inverse, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(inverse[order]) != 0])
    score = combine(pos[order], starts)
    if how == "mean":
        score = score / np.bincount(inverse)
    labels = pool_labels[order][starts]
    return auroc(labels.astype(int), np.stack([1 - score, score], axis=1))


# --------------------------------------------------------------------------------------------------------
# running


def run_task(task: Task, encoder: AudioEncoder, data_root: str | Path | None, out: Path, seeds: tuple[int, ...],
             head: str, epochs: int | None, checkpoint: str | None, batch_size: int, device: str, progress: bool,
             log: Callable[[str], None], memo: dict | None = None,
             strict: bool = False) -> tuple[dict, list[dict], list[str]]:
    """One task end to end -> (results row, per-seed rows, notes). Raises on any failure; with `strict`,
    also when a recording is missing or cannot be embedded."""
    if data_root is None and task.modality != "custom":
        raise TaskError(f"{task.id}: --data-root is required for registered tasks")
    data = task.load(data_root or ".")
    notes = list(data.notes)
    log(f"{task.id} {task.name}: {data.describe()}")
    if data.classes and not any(n.startswith("labels: ") for n in notes):  # custom tasks say it already
        notes.append("labels: " + ", ".join(f"{i} = {c}" for i, c in enumerate(data.classes)))
    for n in notes:
        log(f"  note: {n}")
    if strict and (missing := [n for n in notes if "not on disk" in n or n.startswith("skipped ")]):
        raise TaskError(f"--strict: {missing[0]}")
    X, rows, skip_notes = task_features(encoder, task, data, out, checkpoint, batch_size, device, progress, log, memo)
    if strict and skip_notes:
        raise TaskError(f"--strict: {skip_notes[0]}")
    order = np.argsort(rows)
    X, rows = X[order], rows[order]
    if len(rows) < len(data):  # unreadable recordings: re-check the split without them
        data = data.subset(rows)
        data.validate(task.id, task.kind)
    notes += skip_notes
    r = probe_task(task, data, X, seeds, head, epochs)
    notes += r["notes"]
    for n in skip_notes + r["notes"]:
        log(f"  note: {n}")
    row, seed_rows = task_rows(task, seeds, r["values"], r["fold_std"], r["n_train"], r["n_val"], r["n_test"])
    log(f"  {r['metric']} = {r['mean']:.4f} ± {r['std']:.4f} over {len(seeds)} seed(s)")
    if r["pooled"]:  # a second row: the score per patient, as the PhysioNet 2022 challenge ranks
        pid = f"{task.id}@patient"
        m, sd = float(np.mean(r["pooled"])), float(np.std(r["pooled"]))
        row["pooled"] = {**row, "task": pid, "name": f"{task.name} (patient, {data.pool_how} over recordings)",
                         "mean": fmt_mean_std(m), "std": fmt_mean_std(sd), "n_test": r["n_pooled"]}
        seed_rows += [{"task": pid, "metric": "AUROC", "seed": s, "value": fmt_mean_std(v), "std_folds": ""}
                      for s, v in zip(seeds, r["pooled"])]
        log(f"  patient-level AUROC ({data.pool_how} over a patient's recordings, {r['n_pooled']} test patients) "
            f"= {m:.4f} ± {sd:.4f}")
    if r["roc"] is not None and memo is not None:
        memo.setdefault("roc", {})[task.id] = r["roc"]
    return row, seed_rows, notes


def run_bench(encoder: AudioEncoder, tasks: list[Task], out: str | Path, data_root: str | Path | None = None,
              seeds: tuple[int, ...] = (0, 1, 2, 3, 4), head: str = "linear", epochs: int | None = None,
              checkpoint: str | None = None, batch_size: int = 32, device: str = "cpu", progress: bool = False,
              log: Callable[[str], None] = print, strict: bool = False) -> list[dict]:
    """Run `tasks`; write results.csv, results_seeds.csv, results.md and run.json under `out`."""
    out = Path(out)
    rows, seed_rows, notes, memo = [], [], {}, {}
    config = {"encoder": dict(encoder.config), "checkpoint": checkpoint, "seeds": list(seeds), "head": head,
              "epochs": epochs, "data_root": str(data_root) if data_root else None,
              "tasks": [t.id for t in tasks]}
    options = ", ".join(f"{k}={v}" for k, v in encoder.config.items() if k != "name") or "defaults"
    title = f"acula bench: {encoder.name} ({options}; checkpoint {checkpoint or 'none'})"
    for task in tasks:
        try:
            row, srows, tnotes = run_task(task, encoder, data_root, out, seeds, head, epochs, checkpoint,
                                          batch_size, device, progress, log, memo, strict)
        except Exception as e:  # one failed task must not stop the others
            msg = str(e) if isinstance(e, (TaskError, AudioError)) else f"{type(e).__name__}: {e}"
            log(f"{task.id} {task.name}: ERROR {msg}")
            row, srows, tnotes = error_row(task, msg), [], []
        pooled = row.pop("pooled", None)
        rows += [row] + ([pooled] if pooled else [])
        seed_rows += srows
        notes[task.id] = tnotes
        write_results(out, rows, seed_rows, notes, title)
        write_json(out / "run.json", {**config, "notes": notes,
                                      "protocols": {t.id: t.protocol for t in tasks}})
    if memo.get("roc"):
        write_roc(memo["roc"], out, encoder.name)
    return rows


def write_roc(curves: dict[str, tuple[np.ndarray, np.ndarray]], out: Path, model: str) -> None:
    """`roc_scores.npz` (labels and first-seed test probabilities per AUROC task, for `acula figures roc`
    to overlay several runs) and `roc.png`."""
    from .._io import atomic_path
    from .figures import roc_figure

    arrays = {}
    for task, (y, score) in curves.items():
        arrays[f"{task}/y"], arrays[f"{task}/score"] = y, score
    with atomic_path(out / "roc_scores.npz") as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)
    try:
        roc_figure({t: {model: c} for t, c in curves.items()}, out / "roc.png", title=f"{model}: test ROC (seed 0)")
    except ValueError as e:  # e.g. a test split holding one class: the table still stands
        print(f"acula bench: no ROC figure ({e})", file=sys.stderr)
