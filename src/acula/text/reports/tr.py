"""RespiratoryDatabase@TR (COPD severity, 12-channel lung sounds, Mendeley p9z4h98s6j).

Inputs: `Labels.csv` (BOM, 'Patient ID,Diagnosis,' with COPD0..COPD4 per patient), AcuLa's
`recordings.csv` (Patient_ID, File_Name, Diagnosis) and/or the `H0xx_{L1..L6,R1..R6}.wav` files.
With labels alone there is one report per patient; with files, one per channel recording.
"""

from __future__ import annotations

import re
from pathlib import Path

from ._base import (Builder, NothingToReport, Phrases, Report, ReportInputError, clean, columns_of, expand_paths,
                    raw, read_table, unknown_file)

WAV = re.compile(r"^(H\d+)_([LR])(\d+)$")
# GOLD stage names for COPD0..COPD4 (stage 0 = at risk).
SEVERITY = {0: "at risk", 1: "mild", 2: "moderate", 3: "severe", 4: "very severe"}


def read(paths: list[Path]) -> list[dict]:
    labels: dict[str, str] = {}
    recordings: list[dict] = []
    for p in expand_paths(paths, ("*.csv", "*.wav")):
        if p.suffix.lower() == ".wav":
            if not WAV.match(p.stem):
                raise ReportInputError(f"{p}: TR recordings are named H0xx_L1..L6 / R1..R6")
            recordings.append({"Patient_ID": p.stem.split("_")[0], "File_Name": p.name})
            continue
        cols = columns_of(p)
        if "File_Name" in cols:
            recordings.extend(read_table(p, required=("Patient_ID", "File_Name")))
        elif "Patient ID" in cols:
            for row in read_table(p, required=("Patient ID", "Diagnosis")):
                labels[row["Patient ID"]] = row["Diagnosis"]
        else:
            raise unknown_file(p, "RespiratoryDatabase@TR", "Labels.csv (Patient ID, Diagnosis), recordings.csv "
                               "(Patient_ID, File_Name, Diagnosis) or H0xx_L1.wav files")
    if not recordings:
        return [{"Patient_ID": pid, "Diagnosis": d} for pid, d in labels.items()]
    for rec in recordings:
        if rec["Patient_ID"] in labels:
            if clean(rec.get("Diagnosis")) and clean(rec["Diagnosis"]) != labels[rec["Patient_ID"]]:
                raise ReportInputError(f"TR {rec['File_Name']}: diagnosis {rec['Diagnosis']!r} differs from "
                                       f"Labels.csv's {labels[rec['Patient_ID']]!r}")
            rec["Diagnosis"] = labels[rec["Patient_ID"]]
    return recordings


def record_id(rec: dict) -> str:
    if clean(rec.get("record_id")):
        return clean(rec["record_id"])
    name = clean(rec.get("File_Name"))
    return name[:-4] if name and name.lower().endswith(".wav") else (name or subject_id(rec))


def subject_id(rec: dict) -> str:
    pid = raw(rec.get("Patient_ID", rec.get("Patient ID")))
    if pid is None:
        raise ReportInputError(f"TR record has no 'Patient_ID' (fields: {', '.join(rec)})")
    return pid


def compose(rec: dict, ph: Phrases) -> Report:
    r = Report()
    m = WAV.match(record_id(rec))
    if m:
        side = "left" if m.group(2) == "L" else "right"
        channel = f"{m.group(2)}{m.group(3)}"
        r.note(("channel", channel), ("side", side))
        r.say(ph.pick(f"Lung sound recorded on channel {channel} ({side} side) of a 12-channel auscultation",
                      f"This is channel {channel}, on the {side} side, of a 12-channel lung sound recording",
                      f"Multichannel lung sound recording, channel {channel} ({side} hemithorax)"))
    diag = clean(rec.get("Diagnosis"))
    if diag is None:
        raise NothingToReport("no COPD severity")
    mm = re.fullmatch(r"COPD\s*([0-4])", diag.upper())
    if not mm:
        raise ReportInputError(f"TR record {record_id(rec)}: diagnosis {diag!r} is not COPD0..COPD4")
    level = int(mm.group(1))
    r.note(("copd_severity", f"COPD{level}"), ("copd_stage", SEVERITY[level]))
    r.say(ph.pick(f"COPD severity: COPD{level} ({SEVERITY[level]})",
                  f"The patient's COPD severity is grade {level} of 4 ({SEVERITY[level]}, COPD{level})",
                  f"COPD{level}: {SEVERITY[level]} chronic obstructive pulmonary disease" if level else
                  "COPD0: at risk of chronic obstructive pulmonary disease"))
    return r


BUILDER = Builder(name="tr", version="1", compose=compose, record_id=record_id, subject_id=subject_id, read=read,
                  required=("Diagnosis",))
