"""BMD-HS (BUET multi-disease heart sounds): one report per recording.

Recording ids are `{N|AS|AR|MR|MS|MD}_{patient}_{sup|sit}_{Mit|Tri|Pul|Aor}` (MD = more than one
valvular disease). AcuLa's `questions.csv` (recording, question, answer) says yes/no for each
disease, which also tells which diseases an MD patient has.
"""

from __future__ import annotations

import re
from pathlib import Path

from ._base import (Builder, NothingToReport, Phrases, Report, ReportInputError, clean, expand_paths, join_and,
                    raw, read_table)

ID = re.compile(r"^(N|AS|AR|MR|MS|MD)_(\d+)_(sup|sit)_(Mit|Tri|Pul|Aor)$")
DISEASE = {"AS": "aortic stenosis", "AR": "aortic regurgitation", "MR": "mitral regurgitation",
           "MS": "mitral stenosis"}
POSITION = {"sup": "supine", "sit": "sitting"}
AREA = {"Mit": "mitral", "Tri": "tricuspid", "Pul": "pulmonary", "Aor": "aortic"}
QUESTION = re.compile(r"Does this patient have (.+)\?", re.I)


def read(paths: list[Path]) -> list[dict]:
    by_rec: dict[str, dict] = {}
    for p in expand_paths(paths, ("*.csv",)):
        rows = read_table(p, required=("recording",))
        qa = rows and "question" in rows[0] and "answer" in rows[0]
        for i, row in enumerate(rows):
            rid = row["recording"].removesuffix(".wav")
            rec = by_rec.setdefault(rid, {"recording": rid})
            if not qa:
                continue
            q, a = row["question"].strip(), (clean(row["answer"]) or "").lower()
            if a not in ("yes", "no"):
                raise ReportInputError(f"{p}: row {i + 2}: answer {row['answer']!r} is not yes/no")
            m = QUESTION.match(q)
            if m:
                code = next((c for c, n in DISEASE.items() if n == m.group(1).strip().lower()), None)
                if code is None:
                    raise ReportInputError(f"{p}: row {i + 2}: unknown disease in question {q!r}")
                rec[code] = a
            elif q.lower() == "is this patient normal?":
                rec["N"] = a
            else:
                raise ReportInputError(f"{p}: row {i + 2}: unexpected question {q!r}")
    return list(by_rec.values())


def _parse(rid: str) -> tuple[str, str, str, str]:
    m = ID.match(rid)
    if not m:
        raise ReportInputError(f"BMD recording id {rid!r} does not follow "
                               "'{N|AS|AR|MR|MS|MD}_{patient}_{sup|sit}_{Mit|Tri|Pul|Aor}'")
    return m.groups()


def record_id(rec: dict) -> str:
    rid = raw(rec.get("record_id")) or raw(rec.get("recording"))
    if rid is None:
        raise ReportInputError(f"BMD record has no 'recording' (fields: {', '.join(rec)})")
    return rid


def subject_id(rec: dict) -> str:
    cls, patient, _, _ = _parse(record_id(rec))
    return f"{cls}_{patient}"


def compose(rec: dict, ph: Phrases) -> Report:
    r = Report()
    cls, _, pos, area = _parse(record_id(rec))
    r.note(("auscultation_area", AREA[area]), ("position", POSITION[pos]))
    place = ph.pick(f"the {AREA[area]} area", f"the {AREA[area]} auscultation area")
    r.say(ph.pick(f"Heart sounds recorded at {place} with the patient {POSITION[pos]}",
                  f"Recorded over {place}, patient {POSITION[pos]}",
                  f"This recording was taken at {place} in the {POSITION[pos]} position"))
    answers = {k: rec.get(k) for k in (*DISEASE, "N") if clean(rec.get(k))}
    if answers:
        present = [DISEASE[c] for c in DISEASE if answers.get(c) == "yes"]
        absent = [DISEASE[c] for c in DISEASE if answers.get(c) == "no"]
        normal = answers.get("N") == "yes"
    else:  # only the class code: a single disease, normal, or an unspecified combination
        present = [DISEASE[cls]] if cls in DISEASE else []
        absent, normal = [], cls == "N"
    if normal and present:
        raise ReportInputError(f"BMD {record_id(rec)}: marked normal but with {', '.join(present)}")
    for d in present:
        r.note(("valvular_disease", d))
    for d in absent:
        r.note(("valvular_disease_absent", d))
    if normal:
        r.note(("diagnosis", "normal"))
        r.say(ph.pick("The patient is normal, with no valvular heart disease",
                      "Diagnosis: normal (no valvular heart disease)", "No valvular heart disease"))
    elif present:
        multi = len(present) > 1
        r.say(ph.pick(f"Diagnosis: {join_and(present)}", f"The patient has {join_and(present)}",
                      f"{'Multiple valvular heart disease' if multi else 'Valvular heart disease'}: "
                      f"{join_and(present)}"))
        if absent:
            r.say(ph.pick(f"no {join_and(absent, 'or')}", f"{join_and(absent)} {'are' if len(absent) > 1 else 'is'} "
                          "absent"))
    elif cls == "MD":
        r.note(("valvular_disease", "multiple"))
        r.say(ph.pick("The patient has more than one valvular heart disease", "Multiple valvular heart disease"))
    else:
        raise NothingToReport("no diagnosis")
    return r


BUILDER = Builder(name="bmd", version="1", compose=compose, record_id=record_id, subject_id=subject_id, read=read)
