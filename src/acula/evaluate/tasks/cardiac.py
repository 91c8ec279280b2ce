"""Cardiac tasks the AcuLa paper reports but its code does not define (SPEC §5.5): our protocol.

* circor-murmur: CirCor DigiScope (PhysioNet 1.0.3 training set), murmur Present 1 vs Absent 0
  (`Unknown` left out); every auscultation-location recording is a sample; stratified patient-wise
  60/20/20 split, seed 42.
* zchsound: ZCHSound (clean + noisy subsets), NORMAL 0 vs any defect (ASD/PDA/PFO/VSD) 1; no patient
  ids are published, so the split is by recording, stratified 60/20/20, seed 42.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split

from .base import TaskData, TaskError, dataset_dir, existing, find_file, make_split, read_csv_rows, subject_wise_split

CIRCOR_LABELS = {"Absent": 0, "Present": 1}
CIRCOR_DIRS = ("circor", "circor-heart-sound", "the-circor-digiscope-phonocardiogram-dataset-1.0.3")


def read_circor_patient(path: Path) -> tuple[str, list[str], str]:
    """{pid}.txt -> (patient id, wav names of its location lines, murmur value)."""
    lines = [ln.strip() for ln in path.read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()]
    head = lines[0].split() if lines else []
    if len(head) < 2 or not head[1].isdigit():
        raise TaskError(f"{path}: first line should be 'patient_id n_locations fs', got {lines[:1]!r}")
    n_loc = int(head[1])
    wavs = []
    for ln in lines[1 : 1 + n_loc]:
        fields = ln.split()
        if len(fields) < 3 or ln.startswith("#"):
            raise TaskError(f"{path}: location line should be 'loc hea wav tsv', got {ln!r}")
        wavs.append(fields[2])
    wavs = list(dict.fromkeys(wavs))
    murmur = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("#Murmur:")), None)
    if murmur is None:
        raise TaskError(f"{path}: no '#Murmur:' line")
    return head[0], wavs, murmur


def circor(root: Path) -> TaskData:
    d = dataset_dir(root, CIRCOR_DIRS, "CirCor DigiScope", "training_data/{pid}_{loc}.wav + {pid}.txt")
    td = d / "training_data"
    if not td.is_dir():
        raise TaskError(f"CirCor: {td} not found (PhysioNet circor-heart-sound 1.0.3 layout)")
    patients: list[tuple[str, list[str], str]] = [read_circor_patient(p) for p in sorted(td.glob("*.txt"))]
    notes: list[str] = []
    if not patients:  # no per-patient .txt: the patient table with a Murmur column will do
        table = find_file("training_data.csv", d, td)
        if table is None:
            raise TaskError(f"CirCor: no {{pid}}.txt files in {td} and no training_data.csv in {d}")
        for r in read_csv_rows(table, required=("Patient ID", "Murmur")):
            pid = r["Patient ID"]
            patients.append((pid, sorted(p.name for p in td.glob(f"{pid}_*.wav")), r["Murmur"]))
        notes.append(f"murmur labels read from {table.name} (no per-patient .txt files)")
    paths, labels, subjects = [], [], []
    unknown = 0
    for pid, wavs, murmur in patients:
        if murmur == "Unknown":
            unknown += 1
            continue
        if murmur not in CIRCOR_LABELS:
            raise TaskError(f"CirCor: patient {pid} has murmur {murmur!r}; expected Present, Absent or Unknown")
        for w in wavs:
            paths.append(td / w)
            labels.append(CIRCOR_LABELS[murmur])
            subjects.append(pid)
    if unknown:
        notes.append(f"{unknown} patients with murmur 'Unknown' left out")
    keep = existing(paths, notes, "recordings")
    labels_a, subjects_a = np.array(labels, int)[keep], np.array(subjects, str)[keep]
    split = subject_wise_split(labels_a, subjects_a, seed=42)
    return TaskData([str(paths[i]) for i in keep], labels_a, subjects_a, split, classes=list(CIRCOR_LABELS),
                    notes=notes, root=str(root))


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
