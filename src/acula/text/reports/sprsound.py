"""SPRSound (SJTU paediatric respiratory sounds): one report per recording.

Inputs: AcuLa's `metadata_{train,valid}.csv` (Patient_Num, Record_Annotation, Event_Type, disease;
the file names were lost there, so rows are numbered per patient), or the real layout: the
per-recording `*.json` annotations (`{patient}_{age}_{gender 0=M/1=F}_{p1..p4}_{n}.json`, with
`record_annotation`/`recording_annotation` and `event_annotation[].type`) plus
`SPRSound_patient_summary.csv` for the disease. Poor-quality recordings are skipped, as in AcuLa.
"""

from __future__ import annotations

import collections
import json
import re
from pathlib import Path

from ._base import (Builder, NothingToReport, Phrases, Report, ReportInputError, age_from_years, as_float, clean,
                    columns_of, expand_paths, join_and, raw, read_table, unknown_file, with_article)

RECORD = {"normal": "Normal", "cas": "CAS", "continuous adventitious sounds": "CAS", "das": "DAS",
          "discontinuous adventitious sounds": "DAS", "cas & das": "CAS & DAS",
          "continuous & discontinuous adventitious sounds": "CAS & DAS", "poor quality": "Poor Quality"}
EVENT = {"normal": "normal breath sounds", "fine crackle": "fine crackles", "coarse crackle": "coarse crackles",
         "wheeze": "wheezes", "rhonchi": "rhonchi", "stridor": "stridor", "wheeze+crackle": "wheezes with crackles"}
LOCATION = {"p1": "left posterior", "p2": "left lateral", "p3": "right posterior", "p4": "right lateral"}
DISEASE = {"pneumonia (non-severe)": "non-severe pneumonia", "pneumonia (severe)": "severe pneumonia",
           "other respiratory diseases": "another respiratory disease", "control group": "control group"}
JSON_NAME = re.compile(r"^(\d+)_([\d.]+)_([01])_(p\d+)_(\d+)$")


# --------------------------------------------------------------------------- readers

def read(paths: list[Path]) -> list[dict]:
    tables, annotations, summary = [], [], {}
    for p in expand_paths(paths, ("*.json", "*.csv")):
        if p.suffix.lower() == ".json":
            annotations.append(_read_json(p))
            continue
        cols = columns_of(p)
        low = {c.lower(): c for c in cols}
        if "Record_Annotation" in cols:
            tables.extend(read_table(p, required=("Patient_Num", "Record_Annotation", "Event_Type")))
        elif "disease" in low and ("patient_num" in low or "patient_number" in low):
            pid_col = low.get("patient_num") or low["patient_number"]
            for row in read_table(p, required=(pid_col, low["disease"])):
                summary[row[pid_col]] = {k.lower(): v for k, v in row.items()}
        else:
            raise unknown_file(p, "SPRSound", "metadata csv with Patient_Num/Record_Annotation/Event_Type, "
                               "*.json annotations or SPRSound_patient_summary.csv")
    counts: dict[str, int] = collections.Counter()
    out = []
    for row in tables:
        pid = row["Patient_Num"]
        out.append({"record_id": f"{pid}#{counts[pid]}", **row})
        counts[pid] += 1
    for rec in annotations:
        info = summary.get(rec["Patient_Num"], {})
        if "disease" in info:
            rec["disease"] = info["disease"]
        out.append(rec)
    if summary and not annotations and not tables:
        raise ReportInputError("SPRSound: the patient summary alone holds no recordings; add the *.json annotations")
    return out


def _read_json(path: Path) -> dict:
    m = JSON_NAME.match(path.stem)
    if not m:
        raise ReportInputError(f"{path}: name should be '{{patient}}_{{age}}_{{gender}}_{{location}}_{{number}}.json'")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ReportInputError(f"{path}: not valid JSON ({e})") from None
    rec_ann = data.get("record_annotation", data.get("recording_annotation"))
    if rec_ann is None:
        raise ReportInputError(f"{path}: no 'record_annotation' (or 'recording_annotation') key; keys: {list(data)}")
    events = [e.get("type") for e in data.get("event_annotation", []) if isinstance(e, dict) and e.get("type")]
    pid, age, gender, loc, _ = m.groups()
    return {"record_id": path.stem, "Patient_Num": pid, "Age": age, "Gender": gender, "Location": loc,
            "Record_Annotation": rec_ann,
            "Event_Type": collections.Counter(events).most_common(1)[0][0] if events else "",
            "Event_Types": "; ".join(dict.fromkeys(events))}


def record_id(rec: dict) -> str:
    if clean(rec.get("record_id")):
        return clean(rec["record_id"])
    return subject_id(rec)


def subject_id(rec: dict) -> str:
    pid = raw(rec.get("Patient_Num"))
    if pid is None:
        raise ReportInputError(f"SPRSound record has no 'Patient_Num' (fields: {', '.join(rec)})")
    return pid


# --------------------------------------------------------------------------- builder

def compose(rec: dict, ph: Phrases) -> Report:
    r = Report()
    ann = RECORD.get((clean(rec.get("Record_Annotation")) or "").lower())
    if ann == "Poor Quality":
        raise NothingToReport("poor-quality recording")

    # Who and where (only the real file names carry these).
    age = as_float(rec.get("Age"))
    gender = {"0": "male", "1": "female"}.get(clean(rec.get("Gender")) or "")
    loc = LOCATION.get((clean(rec.get("Location")) or "").lower())
    age_adj = None
    if age is not None:
        noun, age_adj = age_from_years(age)
        r.note(("age", noun))
    if gender:
        r.note(("sex", gender))
    if loc:
        r.note(("chest_location", loc))
    who = " ".join(w for w in (age_adj, gender) if w)
    child = f"{who} child" if who else "a child"
    if who:
        child = with_article(child)
    where = f" over the {loc} chest" if loc else ""
    r.say(ph.pick(f"Paediatric lung sound recording from {child}{where}",
                  f"Lung sounds recorded{where} in {child}" if where else f"Lung sounds recorded in {child}",
                  f"Respiratory sounds of {child}{where}"))

    # Record-level annotation (the classes are exclusive: Normal, CAS, DAS, CAS & DAS).
    if ann == "Normal":
        r.note(("continuous_adventitious_sounds", "absent"), ("discontinuous_adventitious_sounds", "absent"))
        r.say(ph.pick("No adventitious sounds were annotated", "The recording was annotated as normal, "
                      "with no adventitious sounds", "No continuous or discontinuous adventitious sounds are present"))
    elif ann in ("CAS", "DAS", "CAS & DAS"):
        cas, das = "CAS" in ann, "DAS" in ann
        r.note(("continuous_adventitious_sounds", "present" if cas else "absent"),
               ("discontinuous_adventitious_sounds", "present" if das else "absent"))
        if cas and das:
            r.say(ph.pick("Both continuous and discontinuous adventitious sounds are present",
                          "The recording contains continuous and discontinuous adventitious sounds"))
        else:
            yes, no = ("continuous", "discontinuous") if cas else ("discontinuous", "continuous")
            r.say(ph.pick(f"{yes.capitalize()} adventitious sounds are present", f"{yes.capitalize()} adventitious "
                          f"sounds were annotated"))
            r.say(ph.pick(f"no {no} adventitious sounds", f"{no} adventitious sounds are absent"))

    # Event-level annotation.
    types = [t for t in (clean(x) for x in (raw(rec.get("Event_Types")) or "").split(";")) if t]
    main = clean(rec.get("Event_Type"))
    if types:
        abnormal = [EVENT.get(t.lower(), t.lower()) for t in types if t.lower() != "normal"]
        for t in abnormal:
            r.note(("event_type", t))
        if abnormal:
            r.say(ph.pick(f"Annotated respiratory events include {join_and(abnormal)}",
                          f"Event-level annotation: {join_and(abnormal)}"))
    elif main and not (main.lower() == "normal" and ann == "Normal"):
        ev = EVENT.get(main.lower(), main.lower())
        r.note(("predominant_event_type", ev))
        r.say(ph.pick(f"The predominant annotated event type is {ev}", f"Most annotated respiratory events are {ev}",
                      f"Predominant event type: {ev}"))

    disease = clean(rec.get("disease"))
    if disease:
        d = DISEASE.get(disease.lower(), disease.lower())
        r.note(("diagnosis", d))
        if d == "control group":
            r.say(ph.pick("The child belongs to the control group", "Clinical group: control"))
        else:
            r.say(ph.pick(f"Clinical diagnosis: {d}", f"The child was diagnosed with {d}", f"Diagnosis: {d}"))
    if ann is None and not types and not main and not disease:
        raise NothingToReport("no record annotation, event type or disease")
    return r


NON_CLINICAL = ("Gender",)  # left out of `clinical` reports
BUILDER = Builder(name="sprsound", version="1", compose=compose, record_id=record_id, subject_id=subject_id,
                  read=read, required=("Record_Annotation",), non_clinical=NON_CLINICAL)
