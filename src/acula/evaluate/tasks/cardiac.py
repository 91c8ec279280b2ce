"""Cardiac tasks the AcuLa paper reports but its code does not define (docs/protocol.md#cardiac-tasks): our protocol.

* circor-murmur: CirCor DigiScope 2022, murmur audible at this location 1 vs not 0 (patients with murmur
  `Unknown` left out); every auscultation-location recording is a sample; stratified subject-wise 60/20/20
  split, seed 42 (a child with two Patient IDs is one subject). A second score pools each test patient's
  locations (max of the murmur probability) against the patient's murmur label, as the 2022 challenge scores.
* circor-outcome: the patient's outcome Normal 0 / Abnormal 1 on each recording, scored per patient
  (mean over its recordings); the same split.
* zchsound: ZCHSound (clean + noisy subsets), NORMAL 0 vs any defect (ASD/PDA/PFO/VSD) 1; no patient
  ids are published, so the split is by recording, stratified 60/20/20, seed 42.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split

from ...datasets import circor as circor_reader
from ...datasets import yaseen as yaseen_reader
from .base import TaskData, TaskError, dataset_dir, find_file, make_split, read_csv_rows, subject_wise_split

CIRCOR_LABELS = {"Absent": 0, "Present": 1}
CIRCOR_OUTCOME = {"Normal": 0, "Abnormal": 1}


def _circor(root: Path, label_of, pool_label_of, classes: list[str], what: str) -> TaskData:
    """Recordings of the CirCor reader with a label; split by subject (a child with two Patient IDs is one),
    pooled per Patient ID for the patient-level score."""
    result = circor_reader.read(root)
    notes = list(result.notes) + [f"skipped {f}: {why}" for f, why in result.skipped]
    rows = [(r, label_of(r)) for r in result.recordings]
    left_out = sum(y is None for _, y in rows)
    rows = [(r, y) for r, y in rows if y is not None]
    if left_out:
        notes.append(f"{left_out} recordings without a {what} label left out")
    if not rows:
        raise TaskError(f"CirCor: no recording has a {what} label")
    labels = np.array([y for _, y in rows], int)
    subjects = np.array([r.subject for r, _ in rows], str)
    split = subject_wise_split(labels, subjects, seed=42)
    return TaskData([r.path for r, _ in rows], labels, subjects, split, classes=classes, notes=notes, root=str(root),
                    pool=np.array([r.fields["Patient ID"] for r, _ in rows], str),
                    pool_labels=np.array([pool_label_of(r) for r, _ in rows], int),
                    pool_how="max" if what == "murmur" else "mean")


def circor(root: Path) -> TaskData:
    """Murmur audible at this location (recording level); the patient score is the max over its locations."""
    return _circor(root, lambda r: CIRCOR_LABELS.get(r.fields["murmur_at_location"]),
                   lambda r: CIRCOR_LABELS[r.fields["Murmur"]], list(CIRCOR_LABELS), "murmur")


def circor_outcome(root: Path) -> TaskData:
    """The patient's outcome on each of its recordings; the patient score is the mean over them."""
    label = lambda r: CIRCOR_OUTCOME.get(r.fields.get("Outcome", ""))  # noqa: E731
    return _circor(root, label, label, list(CIRCOR_OUTCOME), "outcome")


YASEEN_4CLASS = {"MR": 0, "MS": 1, "MVP": 2, "N": 3}


def _yaseen(root: Path, label_of, classes: list[str]) -> TaskData:
    """No patient ids are published: each file is its own subject, so the split is by file."""
    result = yaseen_reader.read(root)
    notes = [f"skipped {f}: {why}" for f, why in result.skipped] + ["split by file: no patient ids are published"]
    labels = np.array([label_of(r.fields["label"]) for r in result.recordings], int)
    subjects = np.array([r.subject for r in result.recordings], str)
    return TaskData([r.path for r in result.recordings], labels, subjects, subject_wise_split(labels, subjects, 42),
                    classes=classes, notes=notes, root=str(root))


def yaseen_abnormal(root: Path) -> TaskData:
    return _yaseen(root, lambda y: int(y != "N"), ["normal", "valve disease"])


def yaseen_4class(root: Path) -> TaskData:
    return _yaseen(root, YASEEN_4CLASS.__getitem__, list(YASEEN_4CLASS))


ZCH_DETAILS = ("Clean Heartsound Data Details.csv", "Noise Heartsound Data Details.csv")
ZCH_DEFECTS = {"asd", "pda", "pfo", "vsd", "atrial septal defect", "patent ductus arteriosus",
               "patent foramen ovale", "ventricular septal defect"}


def zchsound(root: Path) -> TaskData:
    d = dataset_dir(root, ("ZCHSound", "zchsound"), "ZCHSound", "*.wav + 'Clean Heartsound Data Details.csv'")
    tables = [p for p in (find_file(n, d) for n in ZCH_DETAILS) if p is not None]
    if not tables:
        meta = find_file("metadata.csv", d)
        if meta is None:
            raise TaskError(f"ZCHSound: neither {ZCH_DETAILS[0]!r} nor metadata.csv found in {d}")
        tables = [meta]
    audio = {p.name: p for p in sorted(d.rglob("*.wav"))}
    paths, labels, missing = [], [], []
    for table in tables:
        for n, r in enumerate(read_csv_rows(table, required=("fileName", "diagnosis")), start=2):
            diag = r["diagnosis"].strip().lower()
            if diag == "normal":
                y = 0
            elif diag in ZCH_DEFECTS:
                y = 1
            else:
                raise TaskError(f"{table}: row {n}: diagnosis {r['diagnosis']!r} is not NORMAL/ASD/PDA/PFO/VSD")
            name = r["fileName"] if r["fileName"].lower().endswith(".wav") else r["fileName"] + ".wav"
            if name not in audio:
                missing.append(name)
                continue
            paths.append(str(audio[name]))
            labels.append(y)
    notes = [f"{len(missing)} listed recordings not on disk (e.g. {missing[0]}); left out"] if missing else []
    labels_a = np.array(labels, int)
    if len(labels_a) < 5 or len(set(labels_a.tolist())) < 2:
        raise TaskError(f"ZCHSound: {len(labels_a)} usable recordings ({sorted(set(labels_a.tolist()))} classes); "
                        "need both classes")
    idx = np.arange(len(labels_a))
    rest, te = train_test_split(idx, test_size=0.2, random_state=42, stratify=labels_a)
    tr, va = train_test_split(rest, test_size=0.25, random_state=42, stratify=labels_a[rest])
    return TaskData(paths, labels_a, np.array([Path(p).stem for p in paths]), make_split(len(idx), tr, va, te),
                    classes=["normal", "defect"], notes=notes, root=str(root))
