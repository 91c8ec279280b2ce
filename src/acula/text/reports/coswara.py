"""Coswara (crowd-sourced breathing/cough/voice): one report per participant.

Inputs: AcuLa's `smoker_classification.csv` (id, smoker yes/no) and `gender_classification.csv`
(id, gender), and/or Coswara's `combined_data.csv` (id, a = age, g = gender, smoker y/n/True/False).
Rows are merged by participant id.
"""

from __future__ import annotations

from pathlib import Path

from ._base import (Builder, NothingToReport, Phrases, Report, ReportInputError, age_from_years, as_bool, as_float,
                    clean, columns_of, expand_paths, raw, read_table, sex_of, unknown_file, with_article)

MODALITY = {"breathing-deep": "deep breathing", "breathing-shallow": "shallow breathing", "cough-heavy": "heavy cough",
            "cough-shallow": "shallow cough", "counting-normal": "normal-paced counting",
            "counting-fast": "fast counting", "vowel-a": "sustained vowel /a/", "vowel-e": "sustained vowel /e/",
            "vowel-o": "sustained vowel /o/"}


def read(paths: list[Path]) -> list[dict]:
    merged: dict[str, dict] = {}
    for p in expand_paths(paths, ("*.csv",)):
        cols = columns_of(p)
        if "id" not in cols or not {"smoker", "gender", "g", "a"} & set(cols):
            raise unknown_file(p, "Coswara", "a csv with 'id' and smoker / gender (or combined_data.csv's a, g)")
        for row in read_table(p, required=("id",)):
            rec = merged.setdefault(row["id"], {"id": row["id"]})
            for src, dst in (("smoker", "smoker"), ("gender", "gender"), ("g", "gender"), ("a", "age")):
                if clean(row.get(src)) is not None:
                    rec[dst] = row[src]
    return list(merged.values())


def record_id(rec: dict) -> str:
    rid = raw(rec.get("record_id"))
    if rid:
        return rid
    sid = subject_id(rec)
    mod = clean(rec.get("modality"))
    return f"{sid}_{mod}" if mod else sid


def subject_id(rec: dict) -> str:
    sid = raw(rec.get("id"))
    if sid is None:
        raise ReportInputError(f"Coswara record has no 'id' (fields: {', '.join(rec)})")
    return sid


def compose(rec: dict, ph: Phrases) -> Report:
    r = Report()
    sex = sex_of(rec.get("gender", rec.get("g")))
    age = as_float(rec.get("age", rec.get("a")))
    smoker = as_bool(rec.get("smoker"))
    mod = clean(rec.get("modality"))
    age_adj = None
    if age is not None:
        noun, age_adj = age_from_years(age)
        r.note(("age", noun))
    if sex:
        r.note(("sex", sex))
    if sex == "other":
        who = " ".join(w for w in (age_adj, "participant of other gender") if w)
    else:
        who = " ".join([w for w in (age_adj, sex) if w] + ["participant"])
    sound = MODALITY.get(mod.lower(), mod) if mod else None
    if sound:
        r.note(("recording_type", sound))
    what = f"{sound} recording" if sound else ph.pick("audio recording", "respiratory sound recording")
    r.say(ph.pick(f"{with_article(what)} from {with_article(who)}", f"{what} of {with_article(who)}"))
    if smoker is not None:
        r.note(("smoker", "yes" if smoker else "no"))
        r.say(ph.pick("The participant is a smoker" if smoker else "The participant is a non-smoker",
                      "Smoking status: smoker" if smoker else "Smoking status: non-smoker",
                      "The participant reports smoking" if smoker else "The participant reports not smoking"))
    if smoker is None and sex is None and age is None:
        raise NothingToReport("no smoking status, gender or age")
    return r


BUILDER = Builder(name="coswara", version="1", compose=compose, record_id=record_id, subject_id=subject_id, read=read)
