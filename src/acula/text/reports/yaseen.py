"""Yaseen heart-valve sounds: a report from the label alone.

The release holds no per-recording findings, only the diagnosis, so the report names the diagnosis and
what it typically sounds like, stated as textbook facts, not as findings of this recording.
"""

from __future__ import annotations

from pathlib import Path

from ...datasets import yaseen as reader
from ._base import Builder, Phrases, Report, ReportInputError

NAMES = {  # label -> ways to name the diagnosis
    "MR": ("mitral regurgitation", "mitral valve regurgitation"),
    "MS": ("mitral stenosis", "mitral valve stenosis"),
    "MVP": ("mitral valve prolapse", "prolapse of the mitral valve"),
    "N": ("no valve disease", "a normal heart"),
}
# Textbook auscultation features of each diagnosis (not findings read off the recording).
FEATURES = {
    "MR": ("a holosystolic, blowing murmur best heard at the apex that radiates to the axilla",
           "a blowing pansystolic apical murmur radiating to the left axilla"),
    "MS": ("a low-pitched mid-diastolic rumble preceded by an opening snap",
           "an opening snap followed by a low-pitched rumbling diastolic murmur"),
    "MVP": ("a mid-systolic click, sometimes followed by a late-systolic murmur",
            "a mid-systolic click with or without a late systolic murmur"),
    "N": ("normal first and second heart sounds (S1 and S2) without a murmur",
          "crisp S1 and S2 with no murmur, click or added sound"),
}


def read(paths: list[Path]) -> list[dict]:
    out = []
    for p in paths:
        result = reader.read(p)
        out += [{"record_id": r.id, "label": r.fields["label"], "audio_path": r.path} for r in result.recordings]
        out += [{"record_id": f, "label": "", "_skip": why} for f, why in result.skipped]
    return out


def compose(rec: dict, ph: Phrases) -> Report:
    label = rec.get("label")
    if label not in NAMES:
        raise ReportInputError(f"Yaseen record {rec.get('record_id')}: label {label!r} is not one of "
                               f"{', '.join(NAMES)}")
    r = Report()
    name, feature = ph.pick(*NAMES[label]), ph.pick(*FEATURES[label])
    r.note(("diagnosis", NAMES[label][0]))
    r.say(ph.pick("Heart sound recording", "Phonocardiogram", "Cardiac auscultation recording"))
    if label == "N":
        r.say(ph.pick("Label: normal, no valve disease", "Diagnosis: normal heart sounds",
                      f"The recording is labelled normal ({name})"))
        r.say(ph.pick(f"A normal heart typically gives {feature}", f"Normal auscultation is expected to give {feature}"))
    else:
        cap = name[0].upper() + name[1:]
        r.say(ph.pick(f"Diagnosis: {name}", f"The recording is labelled {name}", f"Label: {name}"))
        r.say(ph.pick(f"{cap} typically causes {feature}", f"The textbook finding in {name} is {feature}",
                      f"{cap} is classically heard as {feature}"))
    return r


BUILDER = Builder(name="yaseen", version="1", compose=compose, record_id=lambda r: r["record_id"],
                  subject_id=lambda r: r["record_id"], read=read, required=("label",))
