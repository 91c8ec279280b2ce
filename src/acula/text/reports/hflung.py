"""HF_Lung_V1 (lung sounds with event labels).

Input: OPERA's `metadata.csv` (filename, split, label). OPERA's `hflung_split.py` sets the label
from the `*_label.txt` event lines: Wheeze / Stridor / Rhonchi, 'Both' when more than one of the
three occurs, 'None' when none does. It never looks at discontinuous sounds (crackles), so 'None'
means no continuous adventitious sound was annotated, not a normal recording.
"""

from __future__ import annotations

from pathlib import Path

from ._base import Builder, NothingToReport, Phrases, Report, ReportInputError, expand_paths, raw, read_table

CAS = {"wheeze": "wheezes", "stridor": "stridor", "rhonchi": "rhonchi"}


def read(paths: list[Path]) -> list[dict]:
    out = []
    for p in expand_paths(paths, ("*.csv",)):
        out.extend(read_table(p, required=("filename", "label")))
    return out


def record_id(rec: dict) -> str:
    name = raw(rec.get("record_id")) or raw(rec.get("filename"))
    if name is None:
        raise ReportInputError(f"HF_Lung record has no 'filename' (fields: {', '.join(rec)})")
    return name[:-4] if name.lower().endswith(".wav") else name


def compose(rec: dict, ph: Phrases) -> Report:
    r = Report()
    label = (raw(rec.get("label")) or "").lower()  # raw: 'None' is a real label here
    r.say(ph.pick("Lung sound recording", "Auscultation recording of the lungs", "Recorded lung sounds"))
    if label in CAS:
        name = CAS[label]
        r.note(("continuous_adventitious_sound", name))
        were, are = ("were", "are") if name != "stridor" else ("was", "is")
        r.say(ph.pick(f"{name} {were} annotated", f"{name} {are} present", f"The recording contains {name}"))
        others = [v for k, v in CAS.items() if k != label]
        r.note(*[("continuous_adventitious_sound_absent", o) for o in others])
        r.say(ph.pick(f"no {others[0]} or {others[1]}", f"{others[0]} and {others[1]} are absent"))
    elif label == "both":
        r.note(("continuous_adventitious_sounds", "more than one type"))
        r.say(ph.pick("More than one type of continuous adventitious sound (wheeze, stridor or rhonchi) was annotated",
                      "The recording contains at least two kinds of continuous adventitious sound among wheezes, "
                      "stridor and rhonchi"))
    elif label == "none":
        r.note(("continuous_adventitious_sounds", "absent"))
        r.say(ph.pick("No continuous adventitious sounds (wheezes, stridor or rhonchi) were annotated",
                      "No wheezes, stridor or rhonchi are present"))
    elif label:
        raise ReportInputError(f"HF_Lung {record_id(rec)}: unknown label {rec.get('label')!r}; "
                               "expected None/Wheeze/Rhonchi/Stridor/Both")
    else:
        raise NothingToReport("no label")
    return r


BUILDER = Builder(name="hf-lung", version="1", compose=compose, record_id=record_id, subject_id=record_id, read=read,
                  required=("label",))
