"""The downstream benchmark (OPERA's probe protocol) for any registered encoder; the command and the protocol are
described in `acula.cli.bench` (`acula bench --help`) and docs/bench.md."""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import json
import os
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from .._io import sha256_file, sha256_text, write_json, write_text
from ..audio import frontend
from ..audio.io import AudioError, load_audio
from ..data.splits import train_val_split
from ..encoders.base import AudioEncoder
from ..extract import Embeddings, embed_files, weights_sha256
from .probe import LinearProbe, auroc
from .tasks import InputPolicy, Task, TaskData, TaskError, csv_task  # noqa: F401  (csv_task: part of this module's API)

RESULT_COLUMNS = ["task", "name", "dataset", "metric", "mean", "std", "n_seeds", "n_train", "n_val", "n_test",
                  "std_folds", "status", "error"]
SEED_COLUMNS = ["task", "metric", "seed", "value", "std_folds"]
HIGHER_IS_BETTER = {"AUROC": True, "MAE": False}


# --------------------------------------------------------------------------------------------------------
# features


def pad_whole(wave: np.ndarray, length: int, mode: str) -> np.ndarray:
    """Pad a short recording to `length` samples the way OPERA's CE/CT extraction does.

    docs/protocol.md#downstream-windows
    """
    if wave.size >= length:
        return wave
    if mode == "repeat":  # `_duplicate_padding`: recording at the end, its tail repeated in front
        return frontend.repeat_pad(wave, wave, length)
    if mode == "zero":  # `_equally_slice_pad_sample` with one slice: tile a short clip, else zero-fill
        out = np.zeros(length, dtype=np.float32)
        reps = length // wave.size if wave.size / length < 0.5 else 1
        out[: reps * wave.size] = np.tile(wave, reps)
        return out
    raise ValueError(f"unknown pad mode {mode!r} (repeat | zero)")


def min_samples(encoder: AudioEncoder, seconds: float) -> int:
    """`seconds` of audio, lengthened where needed so the log-mel has the encoder's minimum frame count."""
    c = encoder.contract
    n = int(seconds * c.sample_rate)
    while frontend.frames_for(n) < c.min_frames:
        n += max(1, c.sample_rate // 100)
    return n


@torch.inference_mode()
def _embed_whole(encoder: AudioEncoder, paths: list[str], policy: InputPolicy, device: str,
                 progress: bool) -> Embeddings:
    """CE/CT path: each whole trimmed recording in one pass (batch 1, variable length), padded if short."""
    c = encoder.contract
    length = min_samples(encoder, policy.seconds)
    encoder.eval().to(device)
    rows, kept, skipped = [], [], []
    for p in tqdm(paths, desc=f"embed [{encoder.name}, whole]", unit="clip", disable=not progress):
        try:
            wave = load_audio(p, sample_rate=c.sample_rate)
            wave, _ = frontend.trim_silence(wave, 60.0, frame_length=c.sample_rate // 10,
                                            hop_length=c.sample_rate // 20)  # OPERA: 100 ms frames, 50 ms hop
            wave = torch.from_numpy(np.ascontiguousarray(pad_whole(wave, length, policy.pad)))
            x = frontend.logmel(wave[None].to(device), sample_rate=c.sample_rate)
            f = encoder.forward_feature(x).float().cpu()[0]
        except AudioError as e:
            skipped.append((p, e.reason))
            continue
        if not torch.isfinite(f).all():
            skipped.append((p, "non-finite embedding"))
            continue
        rows.append(f.numpy())
        kept.append(p)
    emb = np.stack(rows).astype(np.float32) if rows else np.zeros((0, encoder.feature_dim), np.float32)
    return Embeddings(emb, kept, [p for p, _ in skipped], [r for _, r in skipped])


@contextlib.contextmanager
def window_seconds_of(encoder: AudioEncoder, seconds: float):
    """Run `embed_files` with this task's GT window length (8.18 s, 5 s for MMLung, 8 s for NoseMic)."""
    saved = encoder.contract
    encoder.contract = dataclasses.replace(saved, window_seconds=float(seconds))
    try:
        yield
    finally:
        encoder.contract = saved


def embed_task(encoder: AudioEncoder, paths: list[str], policy: InputPolicy | None, batch_size: int = 32,
               device: str = "cpu", progress: bool = False) -> Embeddings:
    if policy is None:
        return embed_files(encoder, paths, batch_size=batch_size, progress=progress, device=device)
    if policy.kind == "windows":
        with window_seconds_of(encoder, policy.seconds):
            return embed_files(encoder, paths, policy="opera", batch_size=batch_size, progress=progress, device=device)
    if policy.kind == "whole":
        return _embed_whole(encoder, paths, policy, device, progress)
    raise ValueError(f"unknown input policy kind {policy.kind!r}")


def feature_key(encoder: AudioEncoder, policy: InputPolicy | None, checkpoint: str | None) -> dict:
    """Everything the features depend on except the file list: preprocessing, encoder, weights."""
    c = encoder.contract
    if policy is None:
        name, seconds, pad = c.window_policy, c.window_seconds, None
    else:
        name, seconds, pad = ("opera" if policy.kind == "windows" else "whole"), policy.seconds, policy.pad
    key = {
        "encoder": dict(encoder.config),
        "feature_dim": encoder.feature_dim,
        "contract": c.to_dict(),
        "input_policy": {"policy": name, "seconds": float(seconds), "pad": pad},
        "frontend_fingerprint": frontend.fingerprint(sample_rate=c.sample_rate, frontend=c.frontend, policy=name,
                                                     window_samples=int(seconds * c.sample_rate), pad=pad),
        "checkpoint": checkpoint,
        "checkpoint_sha256": sha256_file(checkpoint) if checkpoint and Path(checkpoint).is_file() else None,
    }
    return json.loads(json.dumps(key, default=str))  # tuples -> lists, so a reloaded key compares equal


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
    policy = task.input_policy(encoder.name)
    key = feature_key(encoder, policy, checkpoint)
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
            new = embed_task(encoder, todo, policy, batch_size=batch_size, device=device, progress=progress)
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


def fmt_mean_std(x, digits: int = 4) -> str:
    return "" if x is None or (isinstance(x, float) and not np.isfinite(x)) else f"{x:.{digits}f}"


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
    row = {"task": task.id, "name": task.name, "dataset": task.dataset, "metric": r["metric"],
           "mean": fmt_mean_std(r["mean"]), "std": fmt_mean_std(r["std"]), "n_seeds": len(seeds),
           "n_train": r["n_train"], "n_val": r["n_val"], "n_test": r["n_test"],
           "std_folds": fmt_mean_std(float(np.mean(r["fold_std"]))) if r["fold_std"] else "",
           "status": "ok", "error": ""}
    seed_rows = [{"task": task.id, "metric": r["metric"], "seed": s, "value": fmt_mean_std(v),
                  "std_folds": fmt_mean_std(r["fold_std"][i]) if r["fold_std"] else ""}
                 for i, (s, v) in enumerate(zip(seeds, r["values"]))]
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


def csv_text(rows: list[dict], columns: list[str]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def markdown(rows: list[dict], notes: dict[str, list[str]], title: str) -> str:
    lines = [f"# {title}", "", "| task | name | metric | mean ± std | seeds | train / val / test | status |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        arrow = {"AUROC": " ↑", "MAE": " ↓"}.get(r["metric"], "")
        score = f"{r['mean']} ± {r['std']}" if r["status"] == "ok" else ""
        sizes = f"{r['n_train']} / {r['n_val']} / {r['n_test']}" if r["status"] == "ok" else ""
        status = r["status"] if r["status"] == "ok" else f"**error**: {r['error']}"
        status = status.replace("|", "\\|").replace("\n", " ")
        lines.append(f"| {r['task']} | {r['name']} | {r['metric']}{arrow} | {score} | {r['n_seeds']} | {sizes} | "
                     f"{status} |")
    if any(notes.values()):
        lines += ["", "## Notes", ""]
        for task, ns in notes.items():
            lines += [f"- {task}: {n}" for n in ns]
    return "\n".join(lines) + "\n"


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
            row = {"task": task.id, "name": task.name, "dataset": task.dataset, "metric": task.metric, "mean": "",
                   "std": "", "n_seeds": 0, "n_train": "", "n_val": "", "n_test": "", "std_folds": "",
                   "status": "error", "error": msg}
            srows, tnotes = [], []
        pooled = row.pop("pooled", None)
        rows += [row] + ([pooled] if pooled else [])
        seed_rows += srows
        notes[task.id] = tnotes
        write_text(out / "results.csv", csv_text(rows, RESULT_COLUMNS))
        write_text(out / "results_seeds.csv", csv_text(seed_rows, SEED_COLUMNS))
        write_text(out / "results.md", markdown(rows, notes, title))
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


# --------------------------------------------------------------------------------------------------------
# compare


def read_results(path: str | Path) -> dict[str, dict]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: results file not found")
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in ("task", "metric", "mean", "std", "status") if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: not an acula bench results.csv (missing {', '.join(missing)})")
        return {r["task"]: r for r in reader}


def read_seed_values(results_path: str | Path) -> dict[str, dict[str, float]]:
    """{task: {seed: value}} from the results_seeds.csv beside a results.csv (empty if absent)."""
    path = Path(results_path).with_name("results_seeds.csv")
    if not path.is_file():
        return {}
    out: dict[str, dict[str, float]] = {}
    with open(path, newline="", encoding="utf-8") as f:
        for r in csv.DictReader(f):
            if r.get("value"):
                out.setdefault(r["task"], {})[r["seed"]] = float(r["value"])
    return out


def seed_test(a: dict[str, float], b: dict[str, float]) -> tuple[float, str]:
    """(p, test) of B vs A over seeds. Seed s of two runs shares its split and head initialisation, so
    runs with the same seeds are compared pairwise (paired t-test); otherwise Welch's t-test."""
    from scipy import stats

    common = sorted(set(a) & set(b))
    if len(common) > 1:
        diff = np.array([b[s] - a[s] for s in common])
        if np.all(diff == diff[0]):  # no spread: the t statistic is undefined
            return (1.0 if diff[0] == 0 else 0.0), "paired"
        return float(stats.ttest_rel([b[s] for s in common], [a[s] for s in common]).pvalue), "paired"
    if len(a) > 1 and len(b) > 1:
        return float(stats.ttest_ind(list(b.values()), list(a.values()), equal_var=False).pvalue), "Welch"
    return float("nan"), ""


def compare(a_path: str | Path, b_path: str | Path) -> tuple[str, dict]:
    """Side-by-side table of two runs plus paired tests -> (text, statistics)."""
    from scipy import stats

    a, b = read_results(a_path), read_results(b_path)
    sa, sb = read_seed_values(a_path), read_seed_values(b_path)
    lines = [f"A = {a_path}", f"B = {b_path}", "",
             f"{'task':<26} {'metric':<6} {'A':>17} {'B':>17} {'B-A':>9} {'better':>6} {'p':>8}"]
    diffs, details = [], {}
    for task in list(a) + [t for t in b if t not in a]:
        ra, rb = a.get(task), b.get(task)
        label = (ra or rb).get("name") or task
        name = (task if label == task else f"{task} {label}")[:26]
        if ra is None or rb is None:
            lines.append(f"{name:<26} only in {'A' if rb is None else 'B'}")
            continue
        if ra["status"] != "ok" or rb["status"] != "ok" or not ra["mean"] or not rb["mean"]:
            lines.append(f"{name:<26} skipped: {'A' if ra['status'] != 'ok' else 'B'} failed")
            continue
        if ra["metric"] != rb["metric"]:
            lines.append(f"{name:<26} skipped: metric {ra['metric']} vs {rb['metric']}")
            continue
        metric = ra["metric"]
        ma, mb = float(ra["mean"]), float(rb["mean"])
        higher = HIGHER_IS_BETTER.get(metric, True)
        # positive = B better. AUROC differences are on a common [0, 1] scale; MAE is in the task's units,
        # so its improvement enters the across-task test relative to A.
        if higher:
            d = mb - ma
        else:
            d = (ma - mb) / abs(ma) if ma else 0.0
        diffs.append(d)
        p, test = seed_test(sa.get(task, {}), sb.get(task, {}))
        better = "B" if d > 0 else "A" if d < 0 else "="
        details[task] = {"metric": metric, "a": ma, "b": mb, "diff": d, "p": p, "test": test}
        score_a = f"{ma:.4f}±{float(ra['std'] or 0):.4f}"
        score_b = f"{mb:.4f}±{float(rb['std'] or 0):.4f}"
        lines.append(f"{name:<26} {metric:<6} {score_a:>17} {score_b:>17} {mb - ma:>+9.4f} {better:>6} "
                     f"{fmt_mean_std(p, 4) or 'n/a':>8}")
    summary = {"tasks": len(diffs), "b_better": int(sum(d > 0 for d in diffs)), "wilcoxon_p": None,
               "wilcoxon_statistic": None, "per_task": details}
    lines.append("")
    nonzero = [d for d in diffs if d != 0]
    if len(nonzero) >= 2:
        w = stats.wilcoxon(diffs)
        summary.update(wilcoxon_statistic=float(w.statistic), wilcoxon_p=float(w.pvalue))
        lines.append(f"Wilcoxon signed-rank over {len(diffs)} tasks (B vs A; AUROC: B-A, MAE: (A-B)/A): "
                     f"statistic {w.statistic:.1f}, p = {w.pvalue:.4g}; B better on {summary['b_better']}/{len(diffs)}")
    else:
        lines.append(f"Wilcoxon signed-rank: n/a (needs >= 2 tasks with a difference, have {len(nonzero)})")
    lines.append("p: per-task t-test over seeds (from results_seeds.csv beside each results.csv), paired by "
                 "seed when both runs used the same seeds, else Welch's.")
    return "\n".join(lines), summary

