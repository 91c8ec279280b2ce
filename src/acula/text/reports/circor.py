"""CirCor DigiScope 2022 (heart): one report per patient, or per auscultation recording.

Inputs: the patient tables (`training_data.csv`, AcuLa's `validation/test_data.csv`), AcuLa's
`*_data_report.csv` (the `Meta_Report` string is parsed back into fields) and PhysioNet's
per-patient `{pid}.txt` files. The synthetic corpus uses the same column names plus
`Recording location` and `Heart rate` (bpm).
"""

from __future__ import annotations

import re
from pathlib import Path

from ...datasets import circor as reader
from ._base import (Builder, NothingToReport, Phrases, Report, ReportInputError, age_from_years, as_bool,
                    as_float, clean, columns_of, expand_paths, fmt_num, join_and, raw, read_table, unknown_file,
                    with_article)

VALVE = {"AV": "aortic", "PV": "pulmonary", "TV": "tricuspid", "MV": "mitral"}
OTHER_SITE = "Phc"  # PhysioNet: "any other auscultation location"
AGE_GROUP = {"neonate": "neonate", "infant": "infant", "child": "child", "adolescent": "adolescent",
             "young adult": "young adult"}
# Heart-rate reference ranges (bpm) per CirCor age group: the union of the awake and asleep ranges
# of the PALS tables (AHA), so only unambiguous values are called tachycardia / bradycardia. Used
# only when a record has `Heart rate` (the synthetic corpus).
HEART_RATE_RANGE = {"neonate": (85, 205), "infant": (85, 190), "child": (58, 140), "adolescent": (50, 100),
                    "young adult": (60, 100), "adult": (60, 100)}
SHAPE_ADJ = {"plateau": "plateau", "diamond": "diamond-shaped", "crescendo": "crescendo", "decrescendo": "decrescendo"}
META_KEYS = {"Shape": "shape", "Grading": "grading", "Pitch": "pitch", "Quality": "quality"}


# --------------------------------------------------------------------------- readers

def read(paths: list[Path]) -> list[dict]:
    records: list[dict] = []
    release = [Path(p) for p in paths if Path(p).is_dir() and (Path(p).name == "training_data"
                                                                 or (Path(p) / "training_data").is_dir())]
    for folder in release:
        records += from_release(folder.parent if folder.name == "training_data" else folder)
    for p in expand_paths([p for p in paths if Path(p) not in release], ("*.csv", "*.txt")):
        if p.suffix.lower() == ".txt" and re.fullmatch(r"\d+", p.stem):
            records.append(read_patient_txt(p))
            continue
        cols = columns_of(p) if p.suffix.lower() in {".csv", ".tsv", ".txt"} else []
        if "Meta_Report" in cols:
            records.extend(read_report_csv(p))
        elif "Patient ID" in cols:
            records.extend(read_table(p, required=("Patient ID", "Murmur")))
        else:
            raise unknown_file(p, "CirCor", "a patient table with 'Patient ID' and 'Murmur' columns, a report csv with "
                                "'Patient_ID' and 'Meta_Report', or PhysioNet {pid}.txt files")
    return records


def from_release(root: Path) -> list[dict]:
    """Patients of a release folder through the dataset reader: one subject per child (Additional ID), the audio
    file of each location, and the readers' skips (missing audio, bad labels) as skipped records."""
    result = reader.read(root)
    patients: dict[str, dict] = {}
    for r in result.recordings:
        f = r.fields
        rec = patients.setdefault(f["Patient ID"], {k: v for k, v in f.items() if k not in (
            "Recording location", "location_token", "murmur_at_location")} | {
            "subject_id": r.subject, "_recordings": [], "_audio": {}})
        rec["_recordings"].append((f["Recording location"], r.id))
        rec["_audio"][r.id] = r.path
    out = list(patients.values())
    out += [{"Patient ID": Path(f).stem.split("_")[0], "Murmur": "", "_skip": why, "record_id": Path(f).stem}
            for f, why in result.skipped]
    return out


def read_report_csv(path: Path) -> list[dict]:
    """AcuLa's `*_data_report.csv`: rebuild the patient fields from the Meta_Report string."""
    out = []
    for i, row in enumerate(read_table(path, required=("Patient_ID", "Meta_Report"))):
        try:
            rec = parse_meta_report(row["Meta_Report"])
        except ValueError as e:
            raise ReportInputError(f"{path}: row {i + 2} (Patient_ID {row['Patient_ID']}): {e}") from None
        rec["Patient ID"] = row["Patient_ID"]
        out.append(rec)
    return out


def parse_meta_report(text: str) -> dict:
    """'Murmur: Present, Murmur locations: AV+MV, ..., Shape: Plateau, ..., Outcome: Normal' -> fields."""
    rec: dict = {}
    prefix = None  # Shape/Grading/... belong to the timing that precedes them
    for part in text.split(", "):
        key, sep, value = part.partition(": ")
        if not sep:
            raise ValueError(f"cannot parse {part!r} in Meta_Report {text!r}")
        if key in META_KEYS:
            if prefix is None:
                raise ValueError(f"{key!r} before any murmur timing in Meta_Report {text!r}")
            rec[f"{prefix} murmur {META_KEYS[key]}"] = value
            continue
        if key in ("Systolic murmur timing", "Diastolic murmur timing"):
            prefix = key.split()[0]
        rec[key] = value
    if "Murmur" not in rec:
        raise ValueError(f"no 'Murmur:' in Meta_Report {text!r}")
    return rec


def read_patient_txt(path: Path) -> dict:
    """PhysioNet `{pid}.txt` through the dataset reader, as a patient record of this builder."""
    try:
        fields, recordings = reader.read_patient_txt(path)
    except reader.DatasetError as e:
        raise ReportInputError(str(e)) from None
    locs = "+".join(loc for loc, _ in recordings)
    return {**fields, "Recording locations:": locs, "_recordings": recordings}


def expand_locations(records: list[dict]) -> list[dict]:
    """One record per recording: PhysioNet names repeated locations {pid}_{loc}_{n}."""
    out = []
    for rec in records:
        if clean(rec.get("Recording location")) or rec.get("_skip"):
            out.append(rec)
            continue
        pid = clean(rec.get("Patient ID"))
        recordings = rec.get("_recordings")
        if not recordings:
            locs = [x for x in (clean(rec.get("Recording locations:")) or "").split("+") if x]
            if not locs:
                raise ReportInputError(f"CirCor patient {pid}: no 'Recording locations:' to expand into recordings")
            counts = {loc: locs.count(loc) for loc in locs}
            seen: dict[str, int] = {}
            recordings = []
            for loc in locs:
                seen[loc] = seen.get(loc, 0) + 1
                stem = f"{pid}_{loc}" + (f"_{seen[loc]}" if counts[loc] > 1 else "")
                recordings.append((loc, stem))
        for loc, stem in recordings:
            audio = {"audio_path": rec["_audio"][stem]} if "_audio" in rec else {}
            out.append({**rec, "Recording location": loc, "record_id": stem, **audio})
    return out


def record_id(rec: dict) -> str:
    if clean(rec.get("record_id")):
        return clean(rec["record_id"])
    pid = subject_id(rec)
    loc = clean(rec.get("Recording location"))
    return f"{pid}_{loc}" if loc else pid


def subject_id(rec: dict) -> str:
    pid = raw(rec.get("Patient ID"))
    if pid is None:
        raise ReportInputError(f"CirCor record has no 'Patient ID' (fields: {', '.join(rec)})")
    return pid[:-2] if pid.endswith(".0") else pid


# --------------------------------------------------------------------------- phrasing

def site(code: str, style: str) -> str:
    """One auscultation site: 'the mitral valve (MV)' / 'the mitral valve' / 'the mitral area'."""
    if code == OTHER_SITE:
        return "another auscultation site"
    name = VALVE.get(code)
    if name is None:
        return code
    return {"code": f"the {name} valve ({code})", "valve": f"the {name} valve", "area": f"the {name} area"}[style]


def sites(codes: list[str], style: str) -> str:
    """Several sites: 'the aortic, mitral and pulmonary valves' (+ 'another auscultation site')."""
    known = [c for c in codes if c in VALVE]
    others = [c for c in codes if c not in VALVE and c != OTHER_SITE]
    parts = []
    if len(known) == 1:
        parts.append(site(known[0], style))
    elif known:
        if style == "code":
            names = [f"{VALVE[c]} ({c})" for c in known]
        else:
            names = [VALVE[c] for c in known]
        parts.append(f"the {join_and(names)} {'areas' if style == 'area' else 'valves'}")
    parts += others
    if OTHER_SITE in codes:
        parts.append("another auscultation site")
    return join_and(parts)


def site_finding(code: str) -> str:
    return f"{VALVE[code]} valve" if code in VALVE else ("other auscultation site" if code == OTHER_SITE else code)


def murmur_core(ph: Phrases, rec: dict, kind: str) -> tuple[str, str | None, list[tuple[str, str]]]:
    """Noun phrase for one murmur (systolic or diastolic), an optional extra sentence, and findings."""
    def f(attr):
        v = clean(rec.get(f"{kind.capitalize()} murmur {attr}"))
        return v.lower() if v and attr != "grading" else v

    timing, shape, grade, pitch, quality = f("timing"), f("shape"), f("grading"), f("pitch"), f("quality")
    findings = [(f"{kind}_murmur_{k}", v) for k, v in (("timing", timing), ("shape", shape), ("grade", grade),
                                                         ("pitch", pitch), ("quality", quality)) if v]
    pitch_adj = f"{pitch}-pitched" if pitch else None
    shape_adj = SHAPE_ADJ.get(shape, shape) if shape else None
    extra = None
    style = ph.pick("A", "B", "C")
    if style == "A":
        adjs = [timing, pitch_adj, quality]
        tails = [f"graded {grade}" if grade else None, f"with {with_article(shape)} shape" if shape else None]
        core = ", ".join(a for a in adjs if a)
    elif style == "B":
        adjs = [quality, timing, shape_adj]
        tails = [f"of grade {grade}" if grade else None, f"with {pitch} pitch" if pitch else None]
        core = ", ".join(a for a in adjs if a)
    else:
        core = " ".join(a for a in (timing, shape_adj) if a)
        tails = [f"(grade {grade})" if grade else None]
        tone = [t for t in (pitch_adj, f"{quality} in quality" if quality else None) if t]
        if tone:
            extra = f"It is {join_and(tone)}"
    core = f"{core} murmur" if core else "murmur"
    tail = " ".join(t for t in tails if t)
    return (f"{core} {tail}" if tail else core), extra, findings


def heart_rate_sentence(ph: Phrases, hr: float, group: str | None) -> tuple[str, list[tuple[str, str]]]:
    value = f"{fmt_num(hr, 0)} bpm"
    findings = [("heart_rate", value)]
    note = ""
    if group in HEART_RATE_RANGE:
        lo, hi = HEART_RATE_RANGE[group]
        verdict = "tachycardia" if hr > hi else "bradycardia" if hr < lo else "normal for age"
        findings.append(("heart_rate_interpretation", verdict))
        note = f" ({verdict})" if verdict != "normal for age" else ph.pick(", within the normal range for age",
                                                                           " (normal for age)")
    text = ph.pick(f"Heart rate is {value}{note}", f"Heart rate {value}{note}",
                   f"The heart rate was {value}{note}")
    return text, findings


# --------------------------------------------------------------------------- builder

def compose(rec: dict, ph: Phrases) -> Report:
    r = Report()
    style = ph.pick("code", "valve", "area")

    # Who: age group (or age), sex, pregnancy.
    sex = (clean(rec.get("Sex")) or "").lower() or None
    sex = sex if sex in ("male", "female") else None
    age_raw = clean(rec.get("Age"))
    group = AGE_GROUP.get(age_raw.lower()) if age_raw else None
    age_adj = None
    hr_group = group
    if age_raw and group is None and as_float(age_raw) is not None:
        years = as_float(age_raw)
        noun, age_adj = age_from_years(years)
        r.note(("age", noun))
        hr_group = next(g for limit, g in ((28 / 365.25, "neonate"), (1, "infant"), (12, "child"),
                                           (19, "adolescent"), (22, "young adult"), (1e9, "adult")) if years < limit)
    elif group:
        r.note(("age_group", group))
    pregnant = as_bool(rec.get("Pregnancy status")) is True
    if sex:
        r.note(("sex", sex))
    if pregnant:
        r.note(("pregnancy", "pregnant"))
    noun = group if group in AGE_GROUP.values() else None
    short = " ".join(w for w in (age_adj, "pregnant" if pregnant else None, sex, noun) if w) or None
    who_sentence = None
    if short:
        who = short if noun or pregnant else f"{short} patient"  # 'male child', 'pregnant female', 'male patient'
        who_sentence = ph.pick(f"The patient is {with_article(short)}", f"Patient: {short}",
                               f"{with_article(who).capitalize()} was examined")

    # Where this recording was made (per-location reports and the synthetic corpus).
    loc = clean(rec.get("Recording location"))
    loc_sentence = None
    if loc:
        r.note(("recording_location", site_finding(loc)))
        loc_sentence = ph.pick(f"This recording was made at {site(loc, style)}",
                               f"Auscultation site: {site(loc, style)}",
                               f"The recording was taken over {site(loc, style)}")

    # Murmur.
    murmur = (raw(rec.get("Murmur")) or "").lower()
    murmur_sentences: list[str] = []
    if murmur == "present":
        r.note(("murmur", "present"))
        n_kinds = 0
        for kind in ("systolic", "diastolic"):
            if not any(clean(rec.get(f"{kind.capitalize()} murmur {a}")) for a in
                       ("timing", "shape", "grading", "pitch", "quality")):
                continue
            core, extra, fnd = murmur_core(ph, rec, kind)
            r.note(*fnd)
            art = with_article(core)
            if n_kinds:
                murmur_sentences.append(ph.pick(f"{art} is also present", f"In addition, there is {art}",
                                                f"{art} is also heard"))
            else:
                murmur_sentences.append(ph.pick(f"{art} is present", f"Auscultation reveals {art}",
                                                f"There is {art}", f"{art} was heard on auscultation"))
            if extra:
                murmur_sentences.append(extra)
            n_kinds += 1
        if not n_kinds:
            murmur_sentences.append(ph.pick("A murmur is present", "A heart murmur was heard on auscultation",
                                            "Auscultation reveals a murmur"))
        where = [c for c in (clean(rec.get("Murmur locations")) or "").split("+") if c]
        most = clean(rec.get("Most audible location"))
        if where:
            r.note(("murmur_locations", "; ".join(site_finding(c) for c in where)))
        if most:
            r.note(("most_audible_location", site_finding(most)))
        others = [c for c in where if c != most]
        subject, be = (ph.pick("It", "The murmur"), "is") if n_kinds <= 1 else ("The murmurs", "are")
        if most and others:
            murmur_sentences.append(ph.pick(
                f"{subject} {be} most audible at {site(most, style)} and also heard at {sites(others, style)}",
                f"{subject} {be} heard at {sites(where, style)}, loudest at {site(most, style)}",
                f"{subject} {be} loudest at {site(most, style)} and also audible at {sites(others, style)}"))
        elif most and where == [most]:
            murmur_sentences.append(ph.pick(f"{subject} {be} heard only at {site(most, style)}",
                                            f"{subject} {be} confined to {site(most, style)}"))
        elif most:
            murmur_sentences.append(ph.pick(f"{subject} {be} most audible at {site(most, style)}",
                                            f"{subject} {be} heard best at {site(most, style)}"))
        elif where:
            murmur_sentences.append(f"{subject} {be} heard at {sites(where, style)}")
        if loc and where:
            here = loc in where
            r.note(("murmur_at_recording_location", "audible" if here else "not audible"))
            the = "The murmur" if n_kinds <= 1 else "The murmurs"
            if here:
                murmur_sentences.append(ph.pick(f"{the} {be} audible at this site", f"{the} {be} heard in this recording")
                                        + (f", where {'it is' if n_kinds <= 1 else 'they are'} loudest"
                                           if loc == most else ""))
            else:
                murmur_sentences.append(ph.pick(f"{the} {be} not audible at this site",
                                                "No murmur is heard at this site"))
    elif murmur == "absent":
        r.note(("murmur", "absent"))
        murmur_sentences.append(ph.pick("No murmur was detected on auscultation", "No heart murmur is heard",
                                        "Cardiac auscultation reveals no murmur", "Murmur absent"))
    elif murmur == "unknown":
        r.note(("murmur", "undetermined"))
        murmur_sentences.append(ph.pick("The murmur status could not be determined",
                                        "Murmur status is undetermined",
                                        "Whether a murmur is audible could not be determined"))

    # Heart rate (synthetic corpus).
    hr = as_float(rec.get("Heart rate"))
    hr_sentence = None
    if hr is not None:
        hr_sentence, fnd = heart_rate_sentence(ph, hr, hr_group)
        r.note(*fnd)

    outcome = (clean(rec.get("Outcome")) or "").lower()
    outcome_sentence = None
    if outcome in ("normal", "abnormal"):
        r.note(("outcome", outcome))
        outcome_sentence = ph.pick(f"The clinical outcome is {outcome}", f"Outcome: {outcome}",
                                   f"The overall outcome was {outcome}")

    if not (murmur_sentences or outcome_sentence or hr_sentence):
        raise NothingToReport("no murmur status, outcome or heart rate")
    lead = [s for s in (who_sentence, loc_sentence) if s]
    tail = [s for s in (hr_sentence, outcome_sentence) if s]
    if ph.chance(0.5) and who_sentence:
        lead.remove(who_sentence)
        tail.append(who_sentence)
    for s in lead + murmur_sentences + tail:
        r.say(s)
    return r


NON_CLINICAL = ("Sex", "Height", "Weight", "Pregnancy status")  # left out of `clinical` reports
PATIENT = Builder(name="circor", version="1", compose=compose, record_id=record_id, subject_id=subject_id,
                  read=read, required=("Murmur",), non_clinical=NON_CLINICAL)
LOCATION = Builder(name="circor", version="1", compose=compose, record_id=record_id, subject_id=subject_id,
                   read=read, required=("Murmur",), expand=expand_locations, non_clinical=NON_CLINICAL)
