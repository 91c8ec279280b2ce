"""SPRSound (SJTU paediatric respiratory sounds): one report per recording.

Inputs: AcuLa's `metadata_{train,valid}.csv` (Patient_Num, Record_Annotation, Event_Type, disease;
the file names were lost there, so rows are numbered per patient), or the real layout: the
per-recording `*.json` annotations (`{patient}_{age}_{gender 0=M/1=F}_{p1..p4}_{n}.json`, with
`record_annotation`/`recording_annotation` and `event_annotation[].type`) plus
`SPRSound_patient_summary.csv` for the disease. Poor-quality recordings are skipped, as in AcuLa.
"""

from __future__ import annotations

import collections
from pathlib import Path

from ...datasets import sprsound as reader
from ...datasets.base import DatasetError, Recording
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


# --------------------------------------------------------------------------- readers

def read(paths: list[Path]) -> list[dict]:
    tables, annotations, summary, release = [], [], {}, []
    for p in paths:
        if Path(p).is_dir() and next(Path(p).rglob("*.json"), None) is not None:
            release.append(Path(p))  # a release folder: the dataset reader finds audio, JSON and diagnoses
    for p in expand_paths([p for p in paths if Path(p) not in release], ("*.json", "*.csv")):
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
            raise unknown_file(p, "SPRSound", "a release folder, metadata csv with Patient_Num/Record_Annotation/"
                               "Event_Type, *.json annotations or SPRSound_patient_summary.csv")
    counts: dict[str, int] = collections.Counter()
    out = []
    for row in tables:
        pid = row["Patient_Num"]
        out.append({"record_id": f"{pid}#{counts[pid]}", **row})
        counts[pid] += 1
    for folder in release:
        result = reader.read(folder, audio=False)  # a report needs the annotation; corpus build checks audio
        out += [record_of(r) for r in result.recordings]
        out += [{"record_id": Path(f).stem, "Patient_Num": Path(f).stem.split("_")[0], "Record_Annotation": "",
                 "_skip": why} for f, why in result.skipped]
    for rec in annotations:
        info = summary.get(rec["Patient_Num"], {})
        if "disease" in info:
            rec["disease"] = info["disease"]
        out.append(rec)
    if summary and not annotations and not tables and not release:
        raise ReportInputError("SPRSound: the patient summary alone holds no recordings; add the *.json annotations")
    return out


def record_of(r: Recording) -> dict:
    """A dataset reader's recording in the builder's field names, with its timed events."""
    f = r.fields
    return {"record_id": r.id, "Patient_Num": r.subject, "Age": f"{f['age_years']:g}",
            "Gender": {"male": "0", "female": "1"}[f["sex"]], "Location": f["location_code"],
            "Record_Annotation": f["record_annotation"], "Event_Types": "; ".join(dict.fromkeys(e[2] for e in
                                                                                            f["events"])),
            "disease": f["disease"], **({"audio_path": r.path} if r.path else {}), "_events": f["events"]}


def _read_json(path: Path) -> dict:
    try:
        info, ann = reader.parse_stem(path.stem), reader.read_annotation(path)
    except DatasetError as e:
        raise ReportInputError(str(e)) from None
    events = [t for _, _, t in ann["events"]]
    return {"record_id": path.stem, "Patient_Num": info["patient"], "Age": f"{info['age_years']:g}",
            "Gender": {"male": "0", "female": "1"}[info["sex"]], "Location": info["location_code"],
            "Record_Annotation": ann["record_annotation"],
            "Event_Type": collections.Counter(events).most_common(1)[0][0] if events else "",
            "Event_Types": "; ".join(dict.fromkeys(events)), "_events": ann["events"]}


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
    events = rec.get("_events")
    if events:
        event_sentences(r, ph, events, ann)
    elif types:
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
    if ann is None and not types and not main and not disease and not events:
        raise NothingToReport("no record annotation, event type or disease")
    return r


def _seconds(ms: float) -> str:
    return f"{ms / 1000:.1f} s"


def event_sentences(r: Report, ph: Phrases, events: list[tuple[float, float, str]], ann: str | None) -> None:
    """What the timed events say: each adventitious sound, in how many of the annotated events, and when."""
    n = len(events)
    by_type: dict[str, list[tuple[float, float]]] = {}
    for start, end, t in events:
        by_type.setdefault(t, []).append((start, end))
    abnormal = [t for t in by_type if t != "Normal"]
    if not abnormal:
        r.note(("adventitious_events", "none"))
        r.say(ph.pick(f"All {n} annotated respiratory events are normal" if n > 1 else
                      "The one annotated respiratory event is normal",
                      f"Event annotation: {n} normal breathing event{'s' if n > 1 else ''}, none adventitious"))
        return
    parts = []
    for t in abnormal:
        spans = by_type[t]
        name = EVENT.get(t.lower(), t.lower())
        first, last = min(s for s, _ in spans), max(e for _, e in spans)
        r.note(("event_type", name), (f"{name}_events", f"{len(spans)} of {n}"))
        where = (f"from {_seconds(first)} to {_seconds(last)}" if len(spans) > 1 else
                 f"at {_seconds(first)}-{_seconds(last)}")
        share = f"{len(spans)} of the {n} annotated respiratory events" if n > 1 else "the one annotated event"
        parts.append(f"{name} in {share} ({where})")
    r.say(ph.pick(f"Event annotation: {join_and(parts)}", f"The annotated events show {join_and(parts)}"))
    normal = len(by_type.get("Normal", ()))
    if normal:
        r.say(ph.pick(f"{normal} of the {n} events {'is a normal breath' if normal == 1 else 'are normal breaths'}",
                      f"normal breathing in {normal} of the {n} annotated events"))


NON_CLINICAL = ("Gender",)  # left out of `clinical` reports
BUILDER = Builder(name="sprsound", version="2", compose=compose, record_id=record_id, subject_id=subject_id,
                  read=read, required=("Record_Annotation",), non_clinical=NON_CLINICAL)
