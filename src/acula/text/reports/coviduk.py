"""UK COVID-19 Vocal Audio Dataset (zenodo 10043978). No metadata is shipped with acula.

Inputs: `participant_metadata.csv` (participant_identifier, covid_test_result Positive/Negative;
optionally age band, gender, smoker_status, symptom_* and respiratory_condition_* 0/1 flags),
`audio_metadata.csv` (participant_identifier plus one `{modality}_file_name` column per recording:
exhalation, cough, three_cough, sentence) and `train_test_splits.csv`. With audio metadata there
is one report per recording, else one per participant.
"""

from __future__ import annotations

from pathlib import Path

from ._base import (Builder, NothingToReport, Phrases, Report, ReportInputError, as_bool, clean, columns_of,
                    expand_paths, join_and, raw, read_table, unknown_file, with_article)

MODALITY = {"exhalation": "exhalation", "cough": "cough", "three_cough": "three-cough", "sentence": "read-sentence"}
SYMPTOM_NAMES = {"symptom_cough_any": "cough", "symptom_new_continuous_cough": "a new continuous cough",
                 "symptom_runny_or_blocked_nose": "a runny or blocked nose",
                 "symptom_shortness_of_breath": "shortness of breath", "symptom_sore_throat": "a sore throat",
                 "symptom_abdominal_pain": "abdominal pain", "symptom_diarrhoea": "diarrhoea",
                 "symptom_fatigue": "fatigue", "symptom_fever_high_temperature": "fever or high temperature",
                 "symptom_headache": "headache",
                 "symptom_change_to_sense_of_smell_or_taste": "a change to sense of smell or taste",
                 "symptom_loss_of_taste": "loss of taste", "symptom_other": "other symptoms"}


def read(paths: list[Path]) -> list[dict]:
    participants: dict[str, dict] = {}
    audio: list[dict] = []
    splits: dict[str, str] = {}
    for p in expand_paths(paths, ("*.csv",)):
        cols = columns_of(p)
        if "covid_test_result" in cols:
            for row in read_table(p, required=("participant_identifier", "covid_test_result")):
                participants[row["participant_identifier"]] = row
        elif any(c.endswith("_file_name") for c in cols):
            audio.extend(read_table(p, required=("participant_identifier",)))
        elif "splits" in cols:
            for row in read_table(p, required=("participant_identifier", "splits")):
                splits[row["participant_identifier"]] = row["splits"]
        else:
            raise unknown_file(p, "UK COVID-19", "participant_metadata.csv (covid_test_result), audio_metadata.csv "
                               "(*_file_name) or train_test_splits.csv (splits)")
    if not participants:
        raise ReportInputError("UK COVID-19: participant_metadata.csv (with covid_test_result) is required")
    out = []
    if not audio:
        for pid, row in participants.items():
            out.append({**row, **({"split": splits[pid]} if pid in splits else {})})
        return out
    for i, row in enumerate(audio):
        pid = row["participant_identifier"]
        if pid not in participants:
            raise ReportInputError(f"audio_metadata.csv row {i + 2}: participant {pid!r} is not in "
                                   "participant_metadata.csv")
        for col, name in row.items():
            if not col.endswith("_file_name") or not clean(name):
                continue
            out.append({**participants[pid], "modality": col[:-len("_file_name")], "file_name": name,
                        **({"split": splits[pid]} if pid in splits else {})})
    return out


def subject_id(rec: dict) -> str:
    pid = raw(rec.get("participant_identifier"))
    if pid is None:
        raise ReportInputError(f"UK COVID-19 record has no 'participant_identifier' (fields: {', '.join(rec)})")
    return pid


def record_id(rec: dict) -> str:
    rid = raw(rec.get("record_id")) or raw(rec.get("file_name"))
    if rid:
        return rid[:-4] if rid.lower().endswith(".wav") else rid
    mod = clean(rec.get("modality"))
    return f"{subject_id(rec)}_{mod}" if mod else subject_id(rec)


def compose(rec: dict, ph: Phrases) -> Report:
    r = Report()
    result = (clean(rec.get("covid_test_result")) or "").lower()
    if result not in ("positive", "negative"):
        if clean(rec.get("covid_test_result")):
            raise ReportInputError(f"UK COVID-19 {record_id(rec)}: covid_test_result "
                                   f"{rec.get('covid_test_result')!r} is not Positive/Negative")
        raise NothingToReport("no COVID-19 test result")
    mod = clean(rec.get("modality"))
    sound = MODALITY.get(mod.lower(), mod.replace("_", " ")) if mod else None
    age = clean(rec.get("age"))
    sex = (clean(rec.get("gender")) or "").lower() or None
    sex = sex if sex in ("male", "female") else None
    if sound:
        r.note(("recording_type", sound))
    if age:
        r.note(("age", f"{age} years"))
    if sex:
        r.note(("sex", sex))
    who = " ".join(w for w in (sex, "participant") if w) + (f" aged {age} years" if age else "")
    what = f"{sound} recording" if sound else "voice and respiratory recording"
    r.say(ph.pick(f"{with_article(what)} from {with_article(who)}", f"{what} of {with_article(who)}"))
    r.note(("covid_test_result", result))
    r.say(ph.pick(f"The COVID-19 test result was {result}", f"COVID-19 test: {result}",
                  f"The participant tested {result} for COVID-19"))
    smoker = clean(rec.get("smoker_status"))
    if smoker:
        r.note(("smoking_status", smoker.lower()))
        r.say(ph.pick(f"Smoking status: {smoker.lower()}", f"Reported smoking status: {smoker.lower()}"))
    flags = {k: as_bool(v) for k, v in rec.items() if str(k).startswith("symptom_")}
    named = [SYMPTOM_NAMES.get(k, k[len("symptom_"):].replace("_", " ")) for k, v in flags.items()
             if v and k not in ("symptom_none", "symptom_prefer_not_to_say")]
    if named:
        r.note(*[("symptom", s) for s in named])
        r.say(ph.pick(f"Reported symptoms: {join_and(named)}", f"The participant reported {join_and(named)}"))
    elif flags.get("symptom_none"):
        r.note(("symptoms", "none"))
        r.say(ph.pick("No symptoms were reported", "The participant reported no symptoms"))
    conditions = []
    for k, v in rec.items():
        if not str(k).startswith("respiratory_condition") or not as_bool(v):
            continue
        name = str(k).split("_", 2)[-1]  # respiratory_condition(s)_copd_or_emphysema -> copd_or_emphysema
        if name not in ("none", "prefer_not_to_say"):
            conditions.append(name.replace("_", " ").replace("copd", "COPD"))
    if conditions:
        r.note(*[("respiratory_condition", c) for c in conditions])
        r.say(ph.pick(f"Respiratory history: {join_and(conditions)}",
                      f"The participant has a history of {join_and(conditions)}"))
    return r


NON_CLINICAL = ("gender",)  # left out of `clinical` reports
BUILDER = Builder(name="coviduk", version="1", compose=compose, record_id=record_id, subject_id=subject_id,
                  read=read, required=("covid_test_result",), non_clinical=NON_CLINICAL)
