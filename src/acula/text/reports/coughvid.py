"""CoughVID (crowd-sourced coughs): one report per recording (uuid).

Input: `metadata_compiled.csv` (uuid, age, gender, respiratory_condition, fever_muscle_pain,
status in healthy/symptomatic/COVID-19, and up to three experts' `cough_type_{1,2,3}`). The
synthetic corpus uses the same names plus `cough_type` (dry/wet). Expert cough types are stated
only when every expert who labelled the recording agrees.
"""

from __future__ import annotations

from pathlib import Path

from ._base import (Builder, NothingToReport, Phrases, Report, ReportInputError, age_from_years, as_bool, as_float,
                    clean, expand_paths, raw, read_table, sex_of, with_article)

STATUS = {"healthy": "healthy", "symptomatic": "symptomatic", "covid-19": "COVID-19"}
COUGH_TYPE = {"dry": "dry", "wet": "wet"}


def read(paths: list[Path]) -> list[dict]:
    out = []
    for p in expand_paths(paths, ("*.csv",)):
        out.extend(read_table(p, required=("uuid", "status", "age", "gender")))
    return out


def record_id(rec: dict) -> str:
    rid = raw(rec.get("record_id")) or raw(rec.get("uuid"))
    if rid is None:
        raise ReportInputError(f"CoughVID record has no 'uuid' (fields: {', '.join(rec)})")
    return rid


def cough_type_of(rec: dict) -> tuple[str | None, bool]:
    """(dry/wet, from experts?): the record's own cough_type, else the experts' unanimous label."""
    own = COUGH_TYPE.get((clean(rec.get("cough_type")) or "").lower())
    if own:
        return own, False
    labels = {COUGH_TYPE.get((clean(rec.get(f"cough_type_{i}")) or "").lower()) for i in (1, 2, 3)} - {None}
    return (labels.pop(), True) if len(labels) == 1 else (None, False)


def compose(rec: dict, ph: Phrases) -> Report:
    r = Report()
    age = as_float(rec.get("age"))
    sex = sex_of(rec.get("gender"))
    status = STATUS.get((clean(rec.get("status")) or "").lower())
    resp = as_bool(rec.get("respiratory_condition"))
    fever = as_bool(rec.get("fever_muscle_pain"))
    cough, by_expert = cough_type_of(rec)
    if status is None and resp is None and fever is None and cough is None:
        raise NothingToReport("no status, symptoms or cough type")

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
    r.say(ph.pick(f"Cough recording from {with_article(who)}", f"Voluntary cough recorded by {with_article(who)}",
                  f"Cough sound of {with_article(who)}"))

    if status:
        r.note(("covid_status", status))
        r.say({"healthy": ph.pick("The participant reported being healthy", "Self-reported status: healthy"),
               "symptomatic": ph.pick("The participant reported having symptoms",
                                      "Self-reported status: symptomatic"),
               "COVID-19": ph.pick("The participant reported a COVID-19 diagnosis",
                                   "Self-reported status: COVID-19")}[status])
    symptoms = []
    if resp is not None:
        r.note(("respiratory_condition", "yes" if resp else "no"))
        symptoms.append(ph.pick("a pre-existing respiratory condition", "an existing respiratory condition")
                        if resp else None)
    if fever is not None:
        r.note(("fever_or_muscle_pain", "yes" if fever else "no"))
        symptoms.append("fever or muscle pain" if fever else None)
    positives = [s for s in symptoms if s]
    negatives = []
    if resp is False:
        negatives.append("respiratory condition")
    if fever is False:
        negatives.append("fever or muscle pain")
    if positives:
        r.say(ph.pick(f"They report {' and '.join(positives)}", f"Reported: {' and '.join(positives)}"))
    if negatives:
        r.say(ph.pick(f"No {' and no '.join(negatives)} reported", f"They report no {' and no '.join(negatives)}"))
    if cough:
        r.note(("cough_type", cough))
        if by_expert:
            r.say(ph.pick(f"Expert annotation describes the cough as {cough}",
                          f"Experts labelled it a {cough} cough"))
        else:
            r.say(ph.pick(f"The cough is {cough}", f"{with_article(cough)} cough", f"Cough type: {cough}"))
    return r


NON_CLINICAL = ("gender",)  # left out of `clinical` reports
BUILDER = Builder(name="coughvid", version="1", compose=compose, record_id=record_id, subject_id=record_id,
                  read=read, non_clinical=NON_CLINICAL)
