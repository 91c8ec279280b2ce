"""ZCHSound (paediatric heart sounds, congenital heart disease screening).

Inputs: AcuLa's `metadata.csv` (fileName, diagnosis expanded, Data_Type Clean/Noise) or the real
`Clean Heartsound Data Details.csv` / `Noise Heartsound Data Details.csv` (';' separated:
fileName;gender;age(days);diagnosis with NORMAL/ASD/PDA/PFO/VSD); the subset comes from the name.
"""

from __future__ import annotations

from pathlib import Path

from ._base import (Builder, NothingToReport, Phrases, Report, ReportInputError, age_from_days, as_float, clean,
                    columns_of, expand_paths, raw, read_table, sex_of, unknown_file, with_article)

DIAGNOSIS = {"normal": ("normal", None), "asd": ("atrial septal defect", "ASD"),
             "pda": ("patent ductus arteriosus", "PDA"), "pfo": ("patent foramen ovale", "PFO"),
             "vsd": ("ventricular septal defect", "VSD")}
_BY_NAME = {name: (name, abbr) for name, abbr in DIAGNOSIS.values()}


def read(paths: list[Path]) -> list[dict]:
    out = []
    for p in expand_paths(paths, ("*.csv",)):
        cols = columns_of(p)
        if "fileName" not in cols or "diagnosis" not in cols:
            raise unknown_file(p, "ZCHSound", "metadata.csv or '* Heartsound Data Details.csv' with fileName and "
                               "diagnosis columns")
        rows = read_table(p, required=("fileName", "diagnosis"))
        subset = "Noise" if "noise" in p.name.lower() else "Clean" if "clean" in p.name.lower() else None
        for row in rows:
            if subset and not clean(row.get("Data_Type")):
                row["Data_Type"] = subset
            out.append(row)
    return out


def record_id(rec: dict) -> str:
    if clean(rec.get("record_id")):
        return clean(rec["record_id"])
    name = raw(rec.get("fileName"))
    if name is None:
        raise ReportInputError(f"ZCHSound record has no 'fileName' (fields: {', '.join(rec)})")
    return name[:-4] if name.lower().endswith(".wav") else name


def diagnosis_of(value: str) -> tuple[str, str | None]:
    key = value.strip().lower()
    if key in DIAGNOSIS:
        return DIAGNOSIS[key]
    if key in _BY_NAME:
        return _BY_NAME[key]
    raise ReportInputError(f"unknown ZCHSound diagnosis {value!r}; expected NORMAL/ASD/PDA/PFO/VSD or their names")


def compose(rec: dict, ph: Phrases) -> Report:
    r = Report()
    age_days = as_float(rec.get("age(days)", rec.get("age")))
    sex = sex_of(rec.get("gender"))
    age_adj = None
    if age_days is not None:
        noun, age_adj = age_from_days(age_days)
        r.note(("age", noun))
    if sex:
        r.note(("sex", sex))
    who = " ".join(w for w in (age_adj, sex) if w)
    child = with_article(f"{who} child") if who else "a child"
    subset = (clean(rec.get("Data_Type")) or "").lower()
    if subset in ("clean", "noise"):
        r.note(("recording_quality", "clean" if subset == "clean" else "noisy"))
    quality = {"clean": ph.pick(" (clean recording)", ", from the clean-recording subset"),
               "noise": ph.pick(" (noisy recording)", ", from the noisy-recording subset")}.get(subset, "")
    r.say(ph.pick(f"Paediatric heart sound recording from {child}{quality}",
                  f"Heart sounds of {child}{quality}"))
    diag = clean(rec.get("diagnosis"))
    if diag is None:
        raise NothingToReport("no diagnosis")
    name, abbr = diagnosis_of(diag)
    r.note(("diagnosis", name))
    if name == "normal":
        r.say(ph.pick("The diagnosis is normal, with no congenital heart defect", "Diagnosis: normal",
                      "No congenital heart defect was diagnosed"))
    else:
        text = ph.pick(f"{name} ({abbr})", f"{abbr} ({name})", name)
        r.say(ph.pick(f"Diagnosis: {text}", f"The child was diagnosed with {with_article(text)}",
                      f"The clinical diagnosis is {with_article(text)}"))
    return r


NON_CLINICAL = ("gender", "Data_Type")  # left out of `clinical` reports
BUILDER = Builder(name="zchsound", version="1", compose=compose, record_id=record_id, subject_id=record_id,
                  read=read, required=("diagnosis",), non_clinical=NON_CLINICAL)
