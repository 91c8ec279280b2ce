"""CirCor DigiScope 2022 (Oliveira et al. 2022; PhysioNet Challenge 2022), as released.

`training_data/<pid>.txt` lists a patient's recordings ('loc hea wav tsv' lines) and labels
('#Key: value' lines); the audio is `<pid>_<loc>[_n]` as WAV or FLAC. Without `.txt` files the
patient table `training_data.csv` is read instead. The challenge release has no `Outcome`; a later
table with `Patient ID` and `Outcome` is joined when found beside the data.

A child seen in both campaigns has two Patient IDs linked by `Additional ID`: both are one subject
(the smaller id), in every split and in the leakage guard.
"""

from __future__ import annotations

import re
from pathlib import Path

from .base import (AudioIndex, DatasetError, ReadResult, Recording, columns_of, no_audio_error, read_table,
                   side_tables)

NAME = "circor"
DIRS = ("circor", "circor-heart-sound", "the-circor-digiscope-phonocardiogram-dataset-1.0.3")
MURMUR = ("Present", "Absent", "Unknown")
OUTCOME = ("Normal", "Abnormal")
VALVES = ("AV", "PV", "TV", "MV", "Phc")
MISSING = {"", "nan", "NaN", "None"}


def dataset_dir(root: Path) -> Path:
    root = Path(root)
    for d in (root, *(root / n for n in DIRS)):
        if (d / "training_data").is_dir():
            return d
    raise DatasetError(f"CirCor not found under {root}: expected {root / DIRS[0]}/training_data/<pid>.txt and "
                       "<pid>_<loc>.wav or .flac (the PhysioNet release layout)")


def _value(v: str | None) -> str:
    v = (v or "").strip()
    return "" if v in MISSING else v


def read_patient_txt(path: Path) -> tuple[dict, list[tuple[str, str]]]:
    """`<pid>.txt` -> (fields, [(location code, recording stem)])."""
    try:
        lines = [ln.strip() for ln in path.read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()]
    except OSError as e:
        raise DatasetError(f"{path}: cannot read ({e.strerror or e})") from None
    head = lines[0].split() if lines else []
    if len(head) < 2 or not head[1].isdigit():
        raise DatasetError(f"{path}: first line should be 'patient_id n_locations fs', got {lines[:1]!r}")
    n = int(head[1])
    recordings = []
    for ln in lines[1:1 + n]:
        parts = ln.split()
        if len(parts) < 3 or ln.startswith("#"):
            raise DatasetError(f"{path}: location line should be 'loc hea wav tsv', got {ln!r}")
        recordings.append((parts[0], Path(parts[2]).stem))
    fields = {"Patient ID": head[0]}
    for ln in lines[1 + n:]:
        if ln.startswith("#") and ":" in ln:
            key, _, value = ln[1:].partition(":")
            fields[key.strip()] = _value(value)
    if "Murmur" not in fields:
        raise DatasetError(f"{path}: no '#Murmur:' line")
    return fields, list(dict.fromkeys(recordings))


def _from_table(row: dict, td: Path, audio: AudioIndex) -> tuple[dict, list[tuple[str, str]]]:
    pid = row["Patient ID"]
    recs = []
    for stem in sorted(s for s in audio._by_stem if s.startswith(f"{pid}_") and audio.find(s).parent == td):
        recs.append((stem.split("_")[1], stem))
    return {k: _value(v) for k, v in row.items()}, recs


def subjects_of(patients: dict[str, dict]) -> dict[str, str]:
    """Patient ID -> subject: ids linked by `Additional ID` (either way, transitively) share the smallest id."""
    parent = {pid: pid for pid in patients}

    def top(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for pid, f in patients.items():
        other = _value(f.get("Additional ID"))
        other = other[:-2] if other.endswith(".0") else other
        if other:
            parent.setdefault(other, other)
            a, b = top(pid), top(other)
            if a != b:
                lo, hi = sorted((a, b), key=lambda s: (len(s), s) if s.isdigit() else (0, s))
                parent[hi] = lo
    return {pid: top(pid) for pid in patients}


def outcome_table(d: Path) -> tuple[dict[str, str], list[Path]]:
    """Patient ID -> Outcome from every table that has the column (the release's own, then later ones)."""
    out: dict[str, str] = {}
    used = []
    for table in [d / "training_data.csv"] + side_tables(d, NAME, "*.csv", first=False):
        if not (table.is_file() and {"Patient ID", "Outcome"} <= set(columns_of(table))):
            continue
        used.append(table)
        for n, row in enumerate(read_table(table, required=("Patient ID", "Outcome")), start=2):
            pid, value = row["Patient ID"], _value(row["Outcome"])
            if value and value not in OUTCOME:
                raise DatasetError(f"{table}: row {n}: Outcome {value!r} is not Normal or Abnormal")
            if value and out.setdefault(pid, value) != value:
                raise DatasetError(f"{table}: row {n}: patient {pid} has Outcome {value} here, {out[pid]} elsewhere")
    return out, used


def read(root: str | Path) -> ReadResult:
    d = dataset_dir(Path(root))
    td = d / "training_data"
    audio = AudioIndex(td, recursive=False)
    result = ReadResult([])
    patients: dict[str, tuple[dict, list[tuple[str, str]]]] = {}
    txts = sorted(p for p in td.glob("*.txt") if re.fullmatch(r"\d+", p.stem))
    table = d / "training_data.csv"
    listed = [r["Patient ID"] for r in read_table(table, required=("Patient ID",))] if table.is_file() else []
    if txts:
        for p in txts:
            try:
                fields, recs = read_patient_txt(p)
            except DatasetError as e:
                result.skipped.append((str(p), str(e).split(": ", 1)[-1]))
                continue
            patients[fields["Patient ID"]] = (fields, recs)
        for pid in listed:
            if pid not in patients and not any(s[0].endswith(f"{pid}.txt") for s in result.skipped):
                result.skipped.append((str(td / f"{pid}.txt"), "listed in training_data.csv but missing"))
    elif listed:
        for row in read_table(table, required=("Patient ID", "Murmur")):
            patients[row["Patient ID"]] = _from_table(row, td, audio)
        result.notes.append(f"labels read from {table.name} (no per-patient .txt files in {td})")
    else:
        raise DatasetError(f"CirCor: no <pid>.txt files in {td} and no training_data.csv in {d}")

    outcomes: dict[str, str] = {}
    if not all("Outcome" in f for f, _ in patients.values()):
        outcomes, used = outcome_table(d)
        joined = sum(pid in outcomes for pid in patients)
        if joined:
            result.notes.append(f"outcome of {joined} of {len(patients)} patients joined from "
                                f"{', '.join(str(t) for t in used)}")
    subject = subjects_of({pid: f for pid, (f, _) in patients.items()})
    first_missing = None
    for pid, (fields, recs) in patients.items():
        murmur = fields.get("Murmur", "")
        if murmur not in MURMUR:
            result.skipped.append((str(td / f"{pid}.txt"), f"Murmur {murmur!r} is not Present, Absent or Unknown"))
            continue
        outcome = fields.get("Outcome") or outcomes.get(pid, "")
        if outcome and outcome not in OUTCOME:
            result.skipped.append((str(td / f"{pid}.txt"), f"Outcome {outcome!r} is not Normal or Abnormal"))
            continue
        where = [c for c in fields.get("Murmur locations", "").split("+") if c]
        for loc, stem in recs:
            wav = audio.find(stem)
            if wav is None:
                first_missing = first_missing or stem
                result.skipped.append((str(td / f"{pid}.txt"), audio.missing_message(stem)))
                continue
            if murmur == "Present":  # a murmur with no location list leaves this location unknown
                here = ("Present" if loc in where else "Absent") if where else "Unknown"
            else:
                here = murmur
            f = {**fields, "Outcome": outcome, "Recording location": loc,
                 "location_token": stem.split("_", 1)[1] if "_" in stem else loc, "murmur_at_location": here}
            result.recordings.append(Recording(stem, str(wav), subject[pid], NAME, f))
    if not result.recordings:
        if first_missing:
            raise no_audio_error("CirCor", td, first_missing)
        raise DatasetError(f"CirCor: no readable patients in {td}")
    linked = sum(1 for pid, s in subject.items() if s != pid)
    if linked:
        result.notes.append(f"{linked} Patient IDs joined to another by 'Additional ID' (one subject each)")
    return result
