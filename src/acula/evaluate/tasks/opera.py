"""The OPERA benchmark tasks T1, T2, T5-T11, T13-T19 on their real download layouts.

docs/protocol.md#tasks lists them; docs/protocol.md#dataset-layouts the layouts.

Each loader reproduces the published label rule and split; every place where it deliberately differs is
listed in docs/bench.md and, at run time, in the task's notes. Files are visited in sorted order (OPERA
used unsorted `glob`, so its random splits depend on the file system; ours do not).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from ...datasets import icbhi as icbhi_reader
from .base import (PARTS, TaskData, TaskError, carve_val, class_names, dataset_dir, existing, find_file,
                   load_name_list, make_split, read_csv_rows, read_xlsx_rows, require_file,
                   split_file_folders, split_subjects_sklearn, subject_wise_split)


def _natural(s: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s)]


def loso_folds(subjects: np.ndarray) -> list[np.ndarray]:
    """One held-out fold per subject (leave-one-subject-out; LOOCV when each subject has one row)."""
    return [np.flatnonzero(subjects == s) for s in sorted(set(subjects.tolist()), key=_natural)]


def _finish(paths: list[Path], labels: list, subjects: list[str], split: np.ndarray | None, notes: list[str],
            root: Path, what: str, classes: list[str] | None = None, regression: bool = False) -> TaskData:
    """Drop listed-but-missing files, then build TaskData (folds from subjects when there is no split)."""
    keep = existing(paths, notes, what)
    dtype = float if regression else int
    data = TaskData(paths=[str(paths[i]) for i in keep], labels=np.asarray(labels, dtype=dtype)[keep],
                    subjects=np.asarray(subjects, dtype=str)[keep],
                    split=None if split is None else np.asarray(split, dtype=str)[keep],
                    classes=classes, notes=notes, root=str(root))
    if split is None:
        data.folds = loso_folds(data.subjects)
    return data


# --------------------------------------------------------------------------------------------------------
# T1, T2: UK COVID-19 (exhalation / cough)

COVIDUK_LABELS = {"Negative": 0, "Positive": 1}
COVIDUK_SIZES = {"train": 1000, "val": 500, "test": 1000}  # the shipped downsampled lists


def _downsample(split: np.ndarray, labels: np.ndarray, sizes: dict[str, int], seed: int) -> np.ndarray:
    out = split.copy()
    for part, n in sizes.items():
        idx = np.flatnonzero(split == part)
        if len(idx) <= n:
            continue
        strat = labels[idx] if np.unique(labels[idx], return_counts=True)[1].min() >= 2 else None
        _, drop = train_test_split(idx, train_size=n, random_state=seed, stratify=strat)
        out[drop] = ""
    return out


def coviduk(modality: str):
    col = f"{modality}_file_name"

    def load(root: Path) -> TaskData:
        d = dataset_dir(root, ("covidUK",), "UK COVID-19 dataset",
                        "audio_selected/*.wav + audio_metadata.csv + participant_metadata.csv")
        audio = next((d / a for a in ("audio_selected", "audio") if (d / a).is_dir()), None)
        if audio is None:
            raise TaskError(f"UK COVID-19: no audio folder, expected {d / 'audio_selected'}/*.wav")
        meta = read_csv_rows(require_file("audio_metadata.csv", d, what="UK COVID-19"),
                             required=("participant_identifier", col))
        people = read_csv_rows(require_file("participant_metadata.csv", d, what="UK COVID-19"),
                               required=("participant_identifier", "covid_test_result"))
        result = {r["participant_identifier"]: r["covid_test_result"] for r in people}
        files, labels, subjects = [], [], []
        for r in meta:
            pid, name = r["participant_identifier"], r[col]
            if name and result.get(pid) in COVIDUK_LABELS:
                files.append(name)
                labels.append(COVIDUK_LABELS[result[pid]])
                subjects.append(pid)
        labels_a, subjects_a = np.array(labels, int), np.array(subjects, str)
        notes: list[str] = []
        folders = split_file_folders(root, d, "coviduk_eval")
        lists = {p: find_file(f"{modality}_{f}_files_downsample.npy", *folders)
                 for p, f in zip(PARTS, ("training", "val", "testing"))}
        splits_csv = find_file("train_test_splits.csv", d)
        if all(lists.values()):
            where = {name: i for i, name in enumerate(files)}
            split = np.full(len(files), "", dtype=object)
            unknown = 0
            for part, path in lists.items():
                for name in load_name_list(path):
                    if name in where:
                        split[where[name]] = part
                    else:
                        unknown += 1
            if unknown:
                notes.append(f"{unknown} files of the shipped {modality} lists have no labelled row; left out")
        elif splits_csv is not None:
            by_pid = {r["participant_identifier"]: r["splits"]
                      for r in read_csv_rows(splits_csv, required=("participant_identifier", "splits"))}
            split = np.array([by_pid.get(s, "") for s in subjects], dtype=object)
            split = _downsample(split, labels_a, COVIDUK_SIZES, seed=1337)
            notes.append(f"{modality}_*_files_downsample.npy not found: official participant split of "
                         "train_test_splits.csv, each part randomly downsampled (label-stratified, seed 1337) to "
                         "the published 1000/500/1000 files")
        else:
            split = subject_wise_split(labels_a, subjects_a, seed=42)
            notes.append("no shipped lists and no train_test_splits.csv: stratified participant-wise 60/20/20 "
                         "split, seed 42")
        keep = np.flatnonzero(np.isin(split, PARTS))
        return _finish([audio / files[i] for i in keep], labels_a[keep], subjects_a[keep], split[keep], notes,
                       root, "recordings", class_names(COVIDUK_LABELS))

    return load


# --------------------------------------------------------------------------------------------------------
# T5, T6: CoughVID (COVID-19 / sex)

COUGHVID_LABELS = {"covid": ("status", {"healthy": 0, "COVID-19": 1}), "sex": ("gender", {"male": 0, "female": 1})}
COUGHVID_LISTS = ("coughvid__train_uuids.npy", "coughvid__val_uuids.npy", "coughvid_gender_test_uuids.npy")
# coughvid_split.py: test = this many of each gender among cough_detected >= 0.8 (pool size in parentheses)
COUGHVID_TEST = {"female": (1031, 2468), "male": (1924, 4795)}


def coughvid_split_recipe(meta: list[dict]) -> dict[str, str]:
    """OPERA's `coughvid_split.py`, for when the shipped uuid lists are absent.

    cough_detected >= 0.8; test = 1031 female + 1924 male sampled with random_state 0 (scaled down by the
    same fraction on smaller copies); the rest split 75/25 into train/val with random_state 100.
    """
    df = pd.DataFrame(meta)
    df = df[pd.to_numeric(df["cough_detected"], errors="coerce") >= 0.8]
    test = []
    for gender, (n, pool) in COUGHVID_TEST.items():
        sub = df[df["gender"] == gender]
        k = n if len(sub) >= pool else int(round(len(sub) * n / pool))
        test += sub.sample(n=k, random_state=0)["uuid"].tolist()
    rest = df[~df["uuid"].isin(test)]["uuid"].to_numpy()
    train, val = train_test_split(rest, test_size=0.25, random_state=100)
    return {**{u: "train" for u in train}, **{u: "val" for u in val}, **{u: "test" for u in test}}


def coughvid(label: str):
    col, label_map = COUGHVID_LABELS[label]

    def load(root: Path) -> TaskData:
        d = dataset_dir(root, ("coughvid",), "CoughVID", "wav/{uuid}.wav + metadata_compiled.csv")
        wav = d / "wav"
        if not wav.is_dir():
            raise TaskError(f"CoughVID: {wav} not found; convert public_dataset/*.webm|ogg to wav/{{uuid}}.wav first "
                            "(OPERA's coughvid_wav.py, ffmpeg)")
        meta = read_csv_rows(require_file("metadata_compiled.csv", d, d / "public_dataset", what="CoughVID"),
                             required=("uuid", "cough_detected", "gender", "status"))
        notes: list[str] = []
        found = [find_file(n, *split_file_folders(root, d, "coughvid_eval")) for n in COUGHVID_LISTS]
        if all(found):
            part_of = {u: p for p, f in zip(PARTS, found) for u in load_name_list(f)}
        else:
            part_of = coughvid_split_recipe(meta)
            notes.append("shipped uuid lists not found: rebuilt with OPERA's coughvid_split.py recipe "
                         "(cough_detected >= 0.8, seeds 0 and 100)")
        paths, labels, subjects, split = [], [], [], []
        for r in meta:
            u, part = r["uuid"], part_of.get(r["uuid"])
            if part is None or r[col] not in label_map:
                continue
            path = wav / f"{u}.wav"
            if not path.is_file() and (wav / f"{u[:-1]}.wav").is_file():  # some converted names lost a char
                path = wav / f"{u[:-1]}.wav"
            paths.append(path)
            labels.append(label_map[r[col]])
            subjects.append(u)
            split.append(part)
        return _finish(paths, labels, subjects, np.array(split), notes, root, "recordings", class_names(label_map))

    return load


# --------------------------------------------------------------------------------------------------------
# T7: ICBHI 2017, COPD vs healthy

ICBHI_LABELS = {"Healthy": 0, "COPD": 1}


def icbhi(root: Path) -> TaskData:
    d = dataset_dir(root, ("icbhi",), "ICBHI 2017",
                    "ICBHI_final_database/*.wav + ICBHI_Challenge_diagnosis.txt + ICBHI_challenge_train_test.txt")
    audio = d / "ICBHI_final_database"
    wavs = sorted(audio.glob("*.wav"))
    if not wavs:
        raise TaskError(f"ICBHI 2017: no recordings, expected {audio}/*.wav")
    diagnosis = icbhi_reader.read_diagnosis(require_file("ICBHI_Challenge_diagnosis.txt", d, audio, what="ICBHI 2017"))
    official = icbhi_reader.read_split(require_file("ICBHI_challenge_train_test.txt", d, audio, what="ICBHI 2017"))
    notes: list[str] = []
    paths, labels, subjects, split, unlisted = [], [], [], [], 0
    for w in wavs:
        pid = w.stem.split("_")[0]
        if pid not in diagnosis:
            raise TaskError(f"ICBHI 2017: patient {pid} of {w.name} is missing from ICBHI_Challenge_diagnosis.txt")
        if diagnosis[pid] not in ICBHI_LABELS:
            continue
        if official.get(w.stem) not in ("train", "test"):
            unlisted += 1
            continue
        paths.append(w)
        labels.append(ICBHI_LABELS[diagnosis[pid]])
        subjects.append(pid)
        split.append(official[w.stem])
    if unlisted:
        notes.append(f"{unlisted} recordings are not in ICBHI_challenge_train_test.txt; left out")
    split = np.array(split, dtype=object)
    subjects_a = np.array(subjects)
    both = set(subjects_a[split == "train"]) & set(subjects_a[split == "test"])
    if both:  # the official list puts patients 156 and 218 on both sides
        drop = np.isin(subjects_a, sorted(both)) & (split == "train")
        split[drop] = ""
        notes.append(f"official split has patient(s) {', '.join(sorted(both))} on both sides: their {drop.sum()} "
                     "training recordings are left out, so the test set stays official and patient-disjoint")
    labels_a = np.array(labels, int)
    split = carve_val(split.astype(str), labels_a, subjects_a, 0.2, 1337, stratify=True)
    keep = np.flatnonzero(np.isin(split, PARTS))
    return _finish([paths[i] for i in keep], labels_a[keep], subjects_a[keep], split[keep], notes, root,
                   "recordings", class_names(ICBHI_LABELS))


# --------------------------------------------------------------------------------------------------------
# T8, T9: Coswara cough-shallow (smoker / sex), HeAR-aligned "google" split

COSWARA_BAD = {"C7Km0KttQRMMM6UoyocajfgZAOB3", "kgjTguvo3vZJTO7F1qO9GxEicbA3"}  # unreadable audio
COSWARA_LABELS = {
    "smoker": ("smoker", {"no": 0, "n": 0, "false": 0, "yes": 1, "y": 1, "true": 1}),
    "sex": ("g", {"male": 0, "female": 1}),
}


def _coswara_quality(d: Path, modality: str) -> dict[str, str]:
    path = require_file(f"{modality}_labels.csv", d / "annotations", what="Coswara")
    rows = read_csv_rows(path)
    if rows and len(rows[0]) < 2:
        raise TaskError(f"{path}: expected two columns ({{uuid}}_{modality}, quality)")
    out = {}
    for r in rows:
        key, quality = list(r.values())[:2]
        out[key.removesuffix(f"_{modality}")] = quality
    return out


def coswara(label: str):
    col, label_map = COSWARA_LABELS[label]

    def load(root: Path) -> TaskData:
        d = dataset_dir(root, ("Coswara-Data",), "Coswara",
                        "Extracted_data/<date>/<uuid>/cough-shallow.wav + combined_data.csv + annotations/")
        rows = read_csv_rows(require_file("combined_data.csv", d, what="Coswara"), required=("id", col))
        coughs = ("cough-heavy", "cough-shallow")
        quality = {m: _coswara_quality(d, m) for m in coughs}
        audio = {m: {p.parent.name: p for p in sorted((d / "Extracted_data").glob(f"*/*/{m}.wav"))} for m in coughs}
        notes: list[str] = []
        uids, labels, no_audio = [], [], 0
        for r in rows:
            uid, y = r["id"], label_map.get(r[col].lower())
            if uid in COSWARA_BAD or y is None or any(quality[m].get(uid, "0") == "0" for m in coughs):
                continue
            if any(uid not in audio[m] for m in coughs):
                no_audio += 1
                continue
            uids.append(uid)
            labels.append(y)
        if no_audio:
            notes.append(f"{no_audio} participants lack a cough-heavy or cough-shallow recording; left out")
        labels_a = np.array(labels, int)
        folders = split_file_folders(root, d, "coswara_eval")
        # OPERA asks for google_{label}_cough-shallow_split.npy, which does not exist (docs/protocol.md#script-bugs)
        google = find_file((f"google_{label}_cough_split.npy", f"google_{label}_cough-shallow_split.npy"), *folders)
        split = None
        if google is not None:
            values = load_name_list(google)
            order_file = find_file(f"cough_aligned_filenames_{label}_w_cough-shallow.npy", *folders)
            order = [Path(p).parent.name for p in load_name_list(order_file)] if order_file else uids
            if len(order) == len(values):
                part_of = dict(zip(order, values))
                split = np.array([part_of.get(u, "") for u in uids], dtype=object)
                if (split == "").any():
                    notes.append(f"{int((split == '').sum())} participants are not in {google.name}; left out")
            else:
                notes.append(f"{google.name} has {len(values)} entries but {len(order)} participants qualify "
                             "(give cough_aligned_filenames_*.npy for the order): random split used instead")
        if split is None:
            idx = np.arange(len(uids))
            tr, te = train_test_split(idx, test_size=0.2, random_state=1337, stratify=labels_a)
            split = make_split(len(uids), tr, [], te).astype(object)
            if google is None:
                notes.append(f"google_{label}_cough_split.npy not found: OPERA's non-google split "
                             "(80/20 stratified, seed 1337)")
        tr = np.flatnonzero(split == "train")
        _, va = train_test_split(tr, test_size=0.2, random_state=1337, stratify=labels_a[tr])
        split[va] = "val"
        keep = np.flatnonzero(np.isin(split, PARTS))
        return _finish([audio["cough-shallow"][uids[i]] for i in keep], labels_a[keep],
                       [uids[i] for i in keep], split[keep], notes, root, "recordings", class_names(label_map))

    return load


# --------------------------------------------------------------------------------------------------------
# T10: KAUH, healthy vs obstructive (asthma / COPD)


def kauh_label(filename: str) -> int | None:
    """OPERA's rule on `{B|D|E}P{n}_{Diagnosis},...wav`: N -> 0, any asthma -> 1, contains "COPD" -> 1."""
    diag = filename.split(",")[0].split("_")[-1]
    if diag == "N":
        return 0
    if "asthma" in diag.lower() or "COPD" in diag:  # case-sensitive COPD as published: 3 'copd' files drop
        return 1
    return None


def kauh(root: Path) -> TaskData:
    d = dataset_dir(root, ("KAUH",), "KAUH lung sounds", "AudioFiles/*.wav")
    wavs = sorted((d / "AudioFiles").glob("*.wav"))
    if not wavs:
        raise TaskError(f"KAUH: no recordings, expected {d / 'AudioFiles'}/*.wav")
    files = [(w, kauh_label(w.name)) for w in wavs]
    files = [(w, y) for w, y in files if y is not None]
    subjects = np.array([w.name.split("_")[0][2:] for w, _ in files])  # BP47 / DP47 / EP47 -> 47
    labels = np.array([y for _, y in files], int)
    notes: list[str] = []
    folders = split_file_folders(root, d, "kauh_eval")
    shipped, names = find_file("train_test_split.npy", *folders), find_file("sound_dir_loc_subset.npy", *folders)
    if shipped and names:
        part_of = dict(zip((Path(p).name for p in load_name_list(names)), load_name_list(shipped)))
        split = np.array([part_of.get(w.name, "") for w, _ in files], dtype=object)
        if "val" not in set(split):
            split = carve_val(split.astype(str), labels, subjects, 0.1 / 0.8, 1337, stratify=True).astype(object)
            notes.append("shipped split has no validation part: 10 % of the training subjects carved out (seed 1337)")
    else:
        first = {}
        for s, y in zip(subjects, labels):
            first.setdefault(s, y)
        ids = sorted(first, key=_natural)
        tr, va, te = split_subjects_sklearn(ids, [first[s] for s in ids], test=0.2, val=0.1 / 0.8, seed=42)
        split = np.array(["train" if s in tr else "val" if s in va else "test" for s in subjects], dtype=object)
        notes.append("subject-wise 70/10/20 split (stratified, seed 42) rebuilt from the files")
    keep = np.flatnonzero(np.isin(split, PARTS))
    return _finish([files[i][0] for i in keep], labels[keep], subjects[keep], split[keep], notes, root,
                   "recordings", ["healthy", "asthma/COPD"])


# --------------------------------------------------------------------------------------------------------
# T11: RespiratoryDatabase@TR, COPD severity 0-4

TR_LABELS = {f"COPD{i}": i for i in range(5)}


def copd_tr(root: Path) -> TaskData:
    d = dataset_dir(root, ("copd",), "RespiratoryDatabase@TR", "RespiratoryDatabase@TR/H0xx_{L1..R6}.wav + Labels.csv")
    audio = d / "RespiratoryDatabase@TR"
    path = require_file("Labels.csv", d, audio, what="RespiratoryDatabase@TR")
    rows = read_csv_rows(path, required=("Patient ID", "Diagnosis"))
    severity = {}
    for n, r in enumerate(rows, start=2):
        if r["Diagnosis"] not in TR_LABELS:
            raise TaskError(f"{path}: row {n}: diagnosis {r['Diagnosis']!r} is not one of COPD0..COPD4")
        severity[r["Patient ID"]] = TR_LABELS[r["Diagnosis"]]
    ids = list(severity)  # Labels.csv order, as OPERA: the split is then the published one
    tr, va, te = split_subjects_sklearn(ids, [severity[i] for i in ids], test=0.2, val=0.2, seed=1337)
    notes: list[str] = []
    wavs = [w for w in sorted(audio.glob("*.wav")) if w.name[:4] in severity]
    if not wavs:
        raise TaskError(f"RespiratoryDatabase@TR: no recordings of the labelled patients in {audio}")
    subjects = [w.name[:4] for w in wavs]
    split = ["train" if s in tr else "val" if s in va else "test" for s in subjects]
    return _finish(wavs, [severity[s] for s in subjects], subjects, np.array(split), notes, root, "recordings",
                   list(TR_LABELS))


# --------------------------------------------------------------------------------------------------------
# T13-T18: MMLung spirometry regression (LOOCV)

MMLUNG_COLUMNS = {"breath": "Deep_Breath_file", "vowels": "O_Single_file"}


def mmlung(modality: str, target: str):
    col = MMLUNG_COLUMNS[modality]

    def load(root: Path) -> TaskData:
        d = dataset_dir(root, ("mmlung",), "MMLung", "All_path.xlsx + 'Trimmed Data from phone'/...")
        table = find_file(("All_path.xlsx", "All_path.csv"), d)
        if table is None:
            raise TaskError(f"MMLung: {d / 'All_path.xlsx'} not found; run OPERA's datasets/mmlung/extract_mmlung.py "
                            f"inside {d} or give All_path.csv with columns Spirometry_file, {col}, {target}")
        rows = read_xlsx_rows(table) if table.suffix == ".xlsx" else read_csv_rows(table)
        need = ("Spirometry_file", col, target)
        if rows and any(c not in rows[0] for c in need):
            raise TaskError(f"{table}: missing column(s) {[c for c in need if c not in rows[0]]}")
        notes: list[str] = []
        paths, labels, subjects, no_file = [], [], [], 0
        for n, r in enumerate(rows, start=2):
            rel = r[col]
            if not rel or rel.lower() == "nan":
                no_file += 1
                continue
            try:
                y = float(r[target].replace("*", ""))
            except ValueError:
                raise TaskError(f"{table}: row {n}: {target} {r[target]!r} is not a number") from None
            paths.append(d / rel.removeprefix("./"))
            labels.append(y)
            subjects.append(Path(r["Spirometry_file"]).stem.split("_")[0])
        if no_file:
            notes.append(f"{no_file} participants have no {col}; left out")
        return _finish(paths, labels, subjects, None, notes, root, "recordings", regression=True)

    return load


# --------------------------------------------------------------------------------------------------------
# T19: NoseMic respiratory rate (leave-one-subject-out)


def nosemic(root: Path) -> TaskData:
    d = dataset_dir(root, ("nosemic",), "NoseMic", "audio/{uid}_{x}_{y}_{rr}.wav")
    wavs = sorted((d / "audio").glob("*.wav"))
    if not wavs:
        raise TaskError(f"NoseMic: no recordings, expected {d / 'audio'}/{{uid}}_{{x}}_{{y}}_{{rr}}.wav")
    paths, labels, subjects = [], [], []
    for w in wavs:
        fields = w.stem.split("_")
        try:
            if len(fields) != 4:
                raise ValueError
            rr = float(fields[3])
        except ValueError:
            raise TaskError(f"NoseMic: {w.name} does not follow {{uid}}_{{x}}_{{y}}_{{rate}}.wav") from None
        paths.append(w)
        labels.append(rr)
        subjects.append(fields[0])
    return _finish(paths, labels, subjects, None, [], root, "recordings", regression=True)
