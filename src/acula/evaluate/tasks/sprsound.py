"""SPRSound tasks (paediatric lung sounds, Zhang et al. 2022): our protocol, OPERA's probe.

The release's train and intra-subject test folders share every test patient, so they are no held-out
split: all recordings are split by patient, stratified 60/20/20 with seed 42. Poor Quality recordings
are left out of every task (they have no events and no usable sound).

* sprsound-adventitious: record label Normal 0 vs any adventitious sound (CAS, DAS, CAS & DAS) 1.
* sprsound-4class: Normal / CAS / DAS / CAS & DAS, macro one-vs-rest AUROC.
* sprsound-disease: the patient's diagnosis, control group 0 vs pneumonia (severe or non-severe) 1, on
  each recording (patients with other diagnoses or none left out); also scored per patient (mean).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...datasets import sprsound as reader
from .base import TaskData, TaskError, subject_wise_split

ADVENTITIOUS = {"Normal": 0, "CAS": 1, "DAS": 1, "CAS & DAS": 1}
FOUR_CLASS = {"Normal": 0, "CAS": 1, "DAS": 2, "CAS & DAS": 3}
DISEASE = {"Control Group": 0, "Pneumonia (non-severe)": 1, "Pneumonia (severe)": 1}


def _task(root: Path, label_of, classes: list[str], what: str, pooled: bool = False) -> TaskData:
    result = reader.read(root)
    notes = list(result.notes) + [f"skipped {f}: {why}" for f, why in result.skipped]
    poor = [r for r in result.recordings if r.fields["record_annotation"] == "Poor Quality"]
    if poor:
        notes.append(f"{len(poor)} Poor Quality recordings left out")
    rows = [(r, label_of(r)) for r in result.recordings if r.fields["record_annotation"] != "Poor Quality"]
    unlabelled = [r for r, y in rows if y is None]
    if unlabelled:
        notes.append(f"{len(unlabelled)} recordings of {len({r.subject for r in unlabelled})} patients without a "
                     f"{what} label left out")
    rows = [(r, y) for r, y in rows if y is not None]
    if not rows:
        raise TaskError(f"SPRSound: no recording has a {what} label")
    labels = np.array([y for _, y in rows], int)
    subjects = np.array([r.subject for r, _ in rows], str)
    extra = dict(pool=subjects, pool_labels=labels, pool_how="mean") if pooled else {}
    return TaskData([r.path for r, _ in rows], labels, subjects, subject_wise_split(labels, subjects, seed=42),
                    classes=classes, notes=notes, root=str(root), **extra)


def adventitious(root: Path) -> TaskData:
    return _task(root, lambda r: ADVENTITIOUS[r.fields["record_annotation"]], ["normal", "adventitious"],
                 "record")


def four_class(root: Path) -> TaskData:
    return _task(root, lambda r: FOUR_CLASS[r.fields["record_annotation"]], list(FOUR_CLASS), "record")


def disease(root: Path) -> TaskData:
    return _task(root, lambda r: DISEASE.get(r.fields["disease"]), ["control", "pneumonia"], "control/pneumonia",
                 pooled=True)
