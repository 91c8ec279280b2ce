"""SPRSound (SJTU paediatric respiratory sounds, Zhang et al. 2022), as released.

Each recording is `<patient>_<age>_<sex 0=M/1=F>_<p1..p4>_<number>` with a `.json` annotation
(`record_annotation` — the release README's example says `recording_annotation` — and timed
`event_annotation` entries in ms) and its audio, WAV or FLAC, in the same folder or in the release's
`*_wav/` twin of a `*_json/` folder. The diagnosis is not in the release; a table with `Patient_Num` and
`disease` (AcuLa's `metadata_{train,valid}.csv`) is joined when found beside the data.

The subject is the patient number. The release's train / intra-test folders share patients, so they
are no subject-disjoint split; the folder is kept in `fields["folder"]` for reference only.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from .base import AudioIndex, DatasetError, ReadResult, Recording, no_audio_error, read_table, side_tables

NAME = "sprsound"
DIRS = ("sprsound", "SPRSound")
STEM = re.compile(r"^(\d+)_(\d+(?:\.\d+)?)_([01])_(p[1-4])_(\d+)$")
RECORD_LABELS = ("Normal", "CAS", "DAS", "CAS & DAS", "Poor Quality")
EVENT_TYPES = ("Normal", "Rhonchi", "Wheeze", "Stridor", "Coarse Crackle", "Fine Crackle", "Wheeze+Crackle")
CAS_EVENTS = ("Rhonchi", "Wheeze", "Stridor", "Wheeze+Crackle")  # continuous adventitious sounds
DAS_EVENTS = ("Coarse Crackle", "Fine Crackle", "Wheeze+Crackle")  # discontinuous
LOCATIONS = {"p1": "left posterior", "p2": "left lateral", "p3": "right posterior", "p4": "right lateral"}
SEX = {"0": "male", "1": "female"}
DISEASES = ("Pneumonia (non-severe)", "Pneumonia (severe)", "Asthma", "Bronchitis", "Other respiratory diseases",
            "Control Group")


def dataset_dir(root: Path) -> Path:
    """`root` itself when it holds the annotations, else its sprsound/ folder."""
    root = Path(root)
    for name in DIRS:
        if (root / name).is_dir():
            return root / name
    if next(root.rglob("*.json"), None) is not None:
        return root
    raise DatasetError(f"SPRSound not found under {root}: expected {root / DIRS[0]}/.../<patient>_<age>_<sex>_"
                       "<location>_<number>.json with the audio beside it (.wav or .flac)")


def parse_stem(stem: str) -> dict:
    m = STEM.match(stem)
    if not m:
        raise DatasetError(f"{stem}: name should be '<patient>_<age>_<sex 0/1>_<p1..p4>_<number>'")
    pid, age, sex, loc, number = m.groups()
    return {"patient": pid, "age_years": float(age), "sex": SEX[sex], "location_code": loc,
            "location": LOCATIONS[loc], "recording_number": number}


def read_annotation(path: Path) -> dict:
    """One `.json`: the record label and the events as (start ms, end ms, type), checked against the release's
    label sets, so a typo never becomes a new class."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DatasetError(f"{path}: not a readable JSON annotation ({e})") from None
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: expected a JSON object with 'record_annotation'")
    label = data.get("record_annotation", data.get("recording_annotation"))
    if label is None:
        raise DatasetError(f"{path}: no 'record_annotation' (or 'recording_annotation') key; keys: {list(data)}")
    if label not in RECORD_LABELS:
        raise DatasetError(f"{path}: record_annotation {label!r} is not one of {', '.join(RECORD_LABELS)}")
    events = []
    for i, e in enumerate(data.get("event_annotation") or []):
        try:
            start, end, kind = float(e["start"]), float(e["end"]), e["type"]
        except (KeyError, TypeError, ValueError):
            raise DatasetError(f"{path}: event {i} should have numeric 'start', 'end' (ms) and a 'type', got {e!r}") \
                from None
        if kind not in EVENT_TYPES:
            raise DatasetError(f"{path}: event {i} type {kind!r} is not one of {', '.join(EVENT_TYPES)}")
        if not 0 <= start <= end:
            raise DatasetError(f"{path}: event {i} runs from {start} to {end} ms")
        events.append((start, end, kind))
    return {"record_annotation": label, "events": events}


def read_diagnoses(tables: list[Path]) -> dict[str, str]:
    """Patient number -> disease, from tables with `Patient_Num` and `disease` (one value per patient)."""
    out: dict[str, str] = {}
    for table in tables:
        rows = read_table(table)
        low = {c.lower(): c for c in (rows[0] if rows else {})}
        pid_col, dx_col = low.get("patient_num") or low.get("patient_number"), low.get("disease")
        if not (pid_col and dx_col):
            raise DatasetError(f"{table}: a diagnosis table needs 'Patient_Num' and 'disease' columns "
                               f"(has: {', '.join(low.values())})")
        for n, row in enumerate(rows, start=2):
            pid, disease = row[pid_col].strip(), row[dx_col].strip()
            disease = next((d for d in DISEASES if d.lower() == disease.lower()), disease)
            if not disease:
                continue
            if disease not in DISEASES:
                raise DatasetError(f"{table}: row {n}: disease {disease!r} is not one of {', '.join(DISEASES)}")
            if out.get(pid, disease) != disease:
                raise DatasetError(f"{table}: row {n}: patient {pid} has disease {disease!r} here and "
                                   f"{out[pid]!r} elsewhere")
            out[pid] = disease
    return out


def read(root: str | Path, diagnosis_tables: list[Path] | None = None, audio: bool = True) -> ReadResult:
    """Recordings with their annotation; `audio=False` also keeps annotations whose audio is absent (path ''),
    for reports written before the audio is in place."""
    d = dataset_dir(Path(root))
    need_audio = audio
    audio = AudioIndex(d)
    if diagnosis_tables is None:  # AcuLa's metadata_{train,valid}.csv, or a release-style patient summary
        diagnosis_tables = side_tables(d, NAME, "metadata_*.csv") or side_tables(d, NAME, "*patient_summary*.csv")
    tables = diagnosis_tables
    diagnoses = read_diagnoses(tables)
    result = ReadResult([])
    annotated = set()
    for js in sorted(d.rglob("*.json")):
        if not STEM.match(js.stem):
            continue  # not a recording's annotation (e.g. a config file)
        annotated.add(js.stem)
        wav = audio.find(js.stem)
        if wav is None and need_audio:
            result.skipped.append((str(js), audio.missing_message(js.stem)))
            continue
        try:
            ann = read_annotation(js)
        except DatasetError as e:
            result.skipped.append((str(js), str(e).split(": ", 1)[-1]))
            continue
        info = parse_stem(js.stem)
        fields = {**info, **ann, "folder": str(js.parent.relative_to(d)), "annotation_path": str(js),
                  "disease": diagnoses.get(info["patient"], "")}
        result.recordings.append(Recording(js.stem, str(wav or ""), info["patient"], NAME, fields))
    for stem in sorted(set(audio._by_stem) - annotated):
        if STEM.match(stem):
            result.skipped.append((str(audio.find(stem)), "no JSON annotation beside this recording"))
    if not result.recordings:
        if annotated:
            raise no_audio_error("SPRSound", d, sorted(annotated)[0])
        raise DatasetError(f"SPRSound: no '<patient>_<age>_<sex>_<location>_<number>.json' annotations under {d}")
    if tables:
        with_dx = {r.subject for r in result.recordings if r.fields["disease"]}
        result.notes.append(f"diagnosis from {', '.join(t.name for t in tables)}: {len(with_dx)} of "
                            f"{len({r.subject for r in result.recordings})} patients")
    return result


def event_counts(events: list[tuple[float, float, str]]) -> dict[str, int]:
    counts = {t: 0 for t in EVENT_TYPES}
    for _, _, t in events:
        counts[t] += 1
    return counts
