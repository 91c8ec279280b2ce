"""Your own task from a CSV: `audio_path, label[, split][, subject_id]`.

* `audio_path`: relative paths resolve against the CSV's folder.
* `label`: classification (any strings, mapped to 0..C-1 in sorted order and listed in the output) or
  regression (numbers). `kind="auto"` picks regression when every label is a number and there are
  non-integers or more than `AUTO_MAX_CLASSES` distinct values.
* `split`: train / val / test. Without the column: a stratified subject-wise 60/20/20 split, fixed seed.
* `subject_id`: without the column every file is its own subject (a file-level split).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .base import PARTS, Task, TaskData, TaskError, existing, read_csv_rows, subject_wise_split

AUTO_MAX_CLASSES = 10


def _number(text: str) -> float | None:
    try:
        v = float(text)
    except ValueError:
        return None
    return v if np.isfinite(v) else None


def infer_kind(labels: list[str]) -> str:
    values = [_number(v) for v in labels]
    if any(v is None for v in values):
        return "classification"
    non_integer = any(v != int(v) for v in values)
    return "regression" if non_integer or len(set(values)) > AUTO_MAX_CLASSES else "classification"


def _sorted_classes(labels: list[str]) -> list[str]:
    values = set(labels)
    if all(_number(v) is not None for v in values):
        return sorted(values, key=float)
    return sorted(values)


def read_task_csv(path: Path, kind: str = "classification", seed: int = 42) -> TaskData:
    if not path.is_file():
        raise TaskError(f"{path}: task CSV not found")
    rows = read_csv_rows(path, required=("audio_path", "label"))
    if not rows:
        raise TaskError(f"{path}: no rows")
    has_split, has_subject = "split" in rows[0], "subject_id" in rows[0]
    filled = [c for c in ("audio_path", "label", "split", "subject_id") if c in rows[0]]
    paths, labels, splits, subjects, seen = [], [], [], [], {}
    for n, r in enumerate(rows, start=2):  # line 1 is the header
        for col in filled:
            if not r.get(col):
                raise TaskError(f"{path}: row {n} has an empty {col!r}")
        p = Path(r["audio_path"])
        p = p if p.is_absolute() else path.parent / p
        if str(p) in seen:
            raise TaskError(f"{path}: row {n} repeats the audio_path of row {seen[str(p)]} ({p})")
        seen[str(p)] = n
        if has_split and r["split"].lower() not in PARTS:
            raise TaskError(f"{path}: row {n}: split {r['split']!r} is not one of train, val, test")
        paths.append(p)
        labels.append(r["label"])
        splits.append(r["split"].lower() if has_split else "")
        subjects.append(r["subject_id"] if has_subject else str(p))
    kind = infer_kind(labels) if kind == "auto" else kind
    notes = [f"task kind: {kind}"]
    classes = None
    if kind == "regression":
        values = [_number(v) for v in labels]
        bad = next((i for i, v in enumerate(values) if v is None), None)
        if bad is not None:
            raise TaskError(f"{path}: row {bad + 2}: label {labels[bad]!r} is not a number (regression task)")
        y = np.array(values, dtype=float)
    elif kind == "classification":
        classes = _sorted_classes(labels)
        index = {c: i for i, c in enumerate(classes)}
        y = np.array([index[v] for v in labels], dtype=int)
        if has_split:  # a label the probe never trains on cannot be scored
            train_labels = {v for v, s in zip(labels, splits) if s == "train"}
            for i, (v, s) in enumerate(zip(labels, splits)):
                if s != "train" and v not in train_labels:
                    raise TaskError(f"{path}: row {i + 2}: label {v!r} ({s}) never appears in the train split "
                                    f"(train labels: {', '.join(sorted(train_labels)) or 'none'})")
        notes.append("labels: " + ", ".join(f"{i} = {c}" for i, c in enumerate(classes)))
    else:
        raise TaskError(f"task kind must be classification, regression or auto, got {kind!r}")
    keep = existing(paths, notes, "audio files")
    y, subjects_a = y[keep], np.array(subjects, str)[keep]
    if has_split:
        split = np.array(splits, str)[keep]
    else:
        split = subject_wise_split(y, subjects_a, seed=seed, stratify=kind == "classification")
        notes.append(f"no split column: {'stratified ' if kind == 'classification' else ''}subject-wise "
                     f"60/20/20 split, seed {seed}" + ("" if has_subject else " (each file its own subject)"))
    return TaskData([str(paths[i]) for i in keep], y, subjects_a, split, classes=classes, notes=notes,
                    root=str(path.parent))


def csv_task(path: str | Path, kind: str = "classification", task_id: str | None = None, seed: int = 42) -> Task:
    """A Task around a CSV; nothing is read until `load`, so a bad CSV fails that task only."""
    path = Path(path)
    if kind == "auto":
        try:
            kind = infer_kind([r["label"] for r in read_csv_rows(path, required=("label",))])
        except (TaskError, OSError):
            kind = "classification"  # load() reports the real problem
    return Task(
        id=task_id or path.stem, name=path.stem, dataset=str(path), modality="custom", kind=kind,
        target="label column", protocol="split column, or stratified subject-wise 60/20/20 (seed %d)" % seed,
        loader=lambda _root: read_task_csv(path, kind, seed), inputs="csv",
    )
