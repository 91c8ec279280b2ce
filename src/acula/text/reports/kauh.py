"""KAUH lung sounds (King Abdullah University Hospital, Mendeley jwyy9np4gv).

The audio file name carries the metadata: `{B|D|E}P{n}_{Diagnosis},{sound codes},{location codes},{age},{sex}.wav`
(B/D/E = bell / diaphragm / extended filter). Inputs: AcuLa's `metadata.csv` (whose `File_Name`
column keeps the original name), the .wav files themselves, or a folder of them. Codes are parsed
from the file name because AcuLa's expanded `Location` column reads every L as "Lower"
("P L L" -> "Posterior Lower Lower"), while the codes use L for both left and lower.
"""

from __future__ import annotations

import re
from pathlib import Path

from ._base import (Builder, NothingToReport, Phrases, Report, ReportInputError, age_from_years, as_float, clean,
                    columns_of, expand_paths, join_and, raw, read_table, sex_of, unknown_file, with_article)

NAME = re.compile(r"^([BDE])P(\d+)_([^,]*),([^,]*),([^,]*),([^,]*),([^,.]*)$")
FILTER = {"B": "bell", "D": "diaphragm", "E": "extended"}
# Diagnosis spellings in the file names (case varies; 'Plueral' is the dataset's spelling). BRON is
# kept as written: the dataset does not say whether it means bronchiectasis or bronchitis.
DIAGNOSIS = {"n": "normal", "normal": "normal", "asthma": "asthma", "copd": "COPD", "pneumonia": "pneumonia",
             "heart failure": "heart failure", "lung fibrosis": "lung fibrosis", "bron": "BRON",
             "plueral effusion": "pleural effusion", "pleural effusion": "pleural effusion"}
SOUND = {"W": "wheezes", "C": "crackles", "B": "bronchial breath sounds", "CREP": "crepitations",
         "BRONCHIAL": "bronchial breath sounds", "N": "normal"}
PHASE = {"I": "inspiratory", "E": "expiratory"}


# --------------------------------------------------------------------------- parsing

def parse_sounds(codes: str) -> list[tuple[str | None, str]]:
    """'I C E W' -> [('inspiratory', 'crackles'), ('expiratory', 'wheezes')]; 'E W' -> [('expiratory', 'wheezes')]."""
    out, phases = [], []
    for tok in codes.split():
        up = tok.upper()
        if up in PHASE and up not in SOUND:
            phases.append(PHASE[up])
            continue
        if up not in SOUND:
            raise ValueError(f"unknown KAUH sound code {tok!r} in {codes!r}")
        out.append((join_and(phases) or None, SOUND[up]))
        phases = []
    if phases:
        raise ValueError(f"sound codes {codes!r} end with a phase and no sound")
    return out


def parse_location(codes: str) -> dict:
    """'P R L' -> posterior / right / lower. L means left unless R is given or a side is already set."""
    toks = codes.upper().split()
    has_right = "R" in toks
    out: dict = {}
    for t in toks:
        if t in ("A", "P"):
            out["surface"] = "anterior" if t == "A" else "posterior"
        elif t == "R":
            out["side"] = "right"
        elif t in ("U", "M"):
            out["zone"] = "upper" if t == "U" else "middle"
        elif t == "L":
            if not has_right and "side" not in out:
                out["side"] = "left"
            else:
                out["zone"] = "lower"
        else:
            raise ValueError(f"unknown KAUH location code {t!r} in {codes!r}")
    return out


def parse_diagnosis(text: str) -> list[str]:
    """'Heart Failure + COPD' -> ['heart failure', 'COPD']; 'N' -> ['normal']."""
    parts = [p.strip() for p in re.split(r"\+|\band\b", text) if p.strip()]
    out = []
    for p in parts:
        key = p.lower()
        if key not in DIAGNOSIS:
            raise ValueError(f"unknown KAUH diagnosis {p!r} in {text!r}")
        out.append(DIAGNOSIS[key])
    return out


def parse_name(name: str) -> dict:
    stem = name[:-4] if name.lower().endswith(".wav") else name
    m = NAME.match(stem.strip())
    if not m:
        raise ValueError(f"{name!r} does not follow '{{B|D|E}}P{{n}}_{{diagnosis}},{{sounds}},{{location}},{{age}},{{sex}}'")
    filt, num, diag, sounds, loc, age, sex = (g.strip() for g in m.groups())
    return {"ID": f"{filt}P{num}", "Filter": filt, "Diagnosis": diag, "Sound_Codes": sounds, "Location_Codes": loc,
            "Age": age, "Gender": sex, "File_Name": f"{stem}.wav"}


# --------------------------------------------------------------------------- readers

def read(paths: list[Path]) -> list[dict]:
    out = []
    for p in expand_paths(paths, ("*.wav", "*.csv")):
        if p.suffix.lower() == ".wav":
            out.append(_from_name(p.name, str(p)))
        elif "File_Name" in columns_of(p):
            for i, row in enumerate(read_table(p, required=("ID", "File_Name"))):
                out.append({**row, **_from_name(row["File_Name"], f"{p}: row {i + 2}")})
        else:
            raise unknown_file(p, "KAUH", "metadata.csv with ID and File_Name columns, or the .wav files")
    return out


def _from_name(name: str, where: str) -> dict:
    try:
        return parse_name(name)
    except ValueError as e:
        raise ReportInputError(f"{where}: {e}") from None


def record_id(rec: dict) -> str:
    if clean(rec.get("record_id")):
        return clean(rec["record_id"])
    name = raw(rec.get("File_Name"))
    if name:
        return name[:-4] if name.lower().endswith(".wav") else name
    if raw(rec.get("ID")):
        return raw(rec["ID"])
    raise ReportInputError(f"KAUH record has neither 'File_Name' nor 'ID' (fields: {', '.join(rec)})")


def subject_id(rec: dict) -> str:
    """OPERA's patient id: the number after the filter letter and 'P' (BP33 -> '33')."""
    rid = raw(rec.get("ID")) or record_id(rec).split("_")[0]
    return rid[2:] if re.match(r"^[BDE]P\d+$", rid) else rid


# --------------------------------------------------------------------------- builder

def _parts(rec: dict) -> tuple[list, dict, list]:
    """Sound, location and diagnosis from the file-name codes, else from AcuLa's expanded columns."""
    where = record_id(rec)
    try:
        codes = clean(rec.get("Sound_Codes"))
        sounds = parse_sounds(codes) if codes else []
        if not sounds and clean(rec.get("Sound_Type")):
            sounds = _expanded_sounds(clean(rec["Sound_Type"]))
        codes = clean(rec.get("Location_Codes"))
        loc = parse_location(codes) if codes else _expanded_location(clean(rec.get("Location")) or "")
        diag = parse_diagnosis(clean(rec.get("Diagnosis")) or "") if clean(rec.get("Diagnosis")) else []
    except ValueError as e:
        raise ReportInputError(f"KAUH record {where}: {e}") from None
    return sounds, loc, diag


def _expanded_sounds(text: str) -> list[tuple[str | None, str]]:
    """AcuLa's 'Inspiratory Crackles Expiratory Wheezes' (used only when no codes are at hand)."""
    words = text.replace("Crepitations", "CREP").replace("Wheezes", "W").replace("Crackles", "C")
    words = words.replace("Inspiratory", "I").replace("Expiratory", "E").replace("Bronchial", "BRONCHIAL")
    words = words.replace("Normal", "N")
    return parse_sounds(words)


def _expanded_location(text: str) -> dict:
    out = {}
    for w in text.lower().split():
        if w in ("anterior", "posterior"):
            out["surface"] = w
        elif w in ("left", "right"):
            out["side"] = w
        elif w in ("upper", "middle", "lower") and "zone" not in out:
            out["zone"] = w
    return out


def compose(rec: dict, ph: Phrases) -> Report:
    r = Report()
    sounds, loc, diag = _parts(rec)
    filt = clean(rec.get("Filter")) or (clean(rec.get("ID")) or " ")[0]
    filt = FILTER.get(filt.upper())

    # Where and how.
    if loc:
        r.note(("chest_location", " ".join(loc[k] for k in ("surface", "side", "zone") if k in loc)))
    if filt:
        r.note(("stethoscope_filter", filt))
    zone = " ".join(loc[k] for k in ("side", "zone") if k in loc)
    surface = loc.get("surface")
    if surface and zone:
        place = ph.pick(f"the {zone} {surface} chest", f"the {surface} chest ({zone} zone)")
    elif surface:
        place = f"the {surface} chest"
    elif zone:
        place = f"the {zone} chest"
    else:
        place = None
    how = f"in {filt} mode" if filt else None
    if place or how:
        bits = " ".join(b for b in (f"over {place}" if place else None, how) if b)
        r.say(ph.pick(f"Lung sounds recorded {bits}", f"This recording was made {bits}", f"Recorded {bits}"))

    # What is heard.
    if sounds == [(None, "normal")]:
        r.note(("lung_sounds", "normal"))
        r.say(ph.pick("Breath sounds are normal", "Normal lung sounds are heard",
                      "Auscultation reveals normal breath sounds"))
    elif sounds:
        named = [f"{ph_} {s}" if ph_ else s for ph_, s in sounds if s != "normal"]
        for n in named:
            r.note(("adventitious_sound", n))
        r.say(ph.pick(f"{join_and(named)} are heard", f"Auscultation reveals {join_and(named)}",
                      f"{join_and(named)} are present"))

    # Diagnosis and demographics.
    age = as_float(rec.get("Age"))
    sex = sex_of(rec.get("Gender"))
    age_adj = None
    if age is not None:
        noun, age_adj = age_from_years(age)
        r.note(("age", noun))
    if sex:
        r.note(("sex", sex))
    short = " ".join(w for w in (age_adj, sex) if w) or None
    who = f"{short} patient" if short else None
    for d in diag:
        r.note(("diagnosis", d))
    if diag == ["normal"]:
        text = ph.pick(f"{with_article(who)} with no respiratory diagnosis" if who else "No respiratory diagnosis",
                       "Diagnosis: normal" + (f" ({short})" if short else ""))
        r.say(text)
    elif diag:
        dx = join_and(["a diagnosis coded as BRON" if d == "BRON" else d for d in diag])
        dx_plain = join_and(["BRON" if d == "BRON" else d for d in diag])
        if who:
            r.say(ph.pick(f"{with_article(who)} with {dx}", f"Diagnosis: {dx_plain} ({short})",
                          f"The patient is {with_article(short)} diagnosed with {dx_plain}"))
        else:
            r.say(ph.pick(f"Diagnosis: {dx_plain}", f"The patient has {dx}"))
    elif who:
        r.say(f"The patient is {with_article(who)}")
    if not (sounds or diag):
        raise NothingToReport("no sound type or diagnosis")
    return r


NON_CLINICAL = ("Gender", "Filter")  # left out of `clinical` reports
BUILDER = Builder(name="kauh", version="1", compose=compose, record_id=record_id, subject_id=subject_id, read=read,
                  required=("Diagnosis",), non_clinical=NON_CLINICAL)
