"""Heart-valve sounds of Yaseen, Son and Kwon (Applied Sciences 2018): `labels.csv` (path, label) + audio.

Labels MR / MS / MVP / N (mitral regurgitation, stenosis, valve prolapse, normal). No patient ids are
published, so each file is its own subject: any split of it is by file, which may put one patient's
recordings on both sides.
"""

from __future__ import annotations

from pathlib import Path

from .base import DatasetError, ReadResult, Recording, find_audio, read_table

NAME = "yaseen"
DIRS = ("heart-yaseen", "yaseen")
LABELS = ("MR", "MS", "MVP", "N")


def dataset_dir(root: Path) -> Path:
    root = Path(root)
    for d in (root, *(root / n for n in DIRS)):
        if (d / "labels.csv").is_file():
            return d
    raise DatasetError(f"Yaseen heart sounds not found under {root}: expected {root / DIRS[0]}/labels.csv "
                       "(columns path,label) and the audio files it lists")


def read(root: str | Path) -> ReadResult:
    d = dataset_dir(Path(root))
    table = d / "labels.csv"
    result = ReadResult([])
    seen = set()
    for n, row in enumerate(read_table(table, required=("path", "label")), start=2):
        file, label = row["path"], row["label"]
        if label not in LABELS:
            result.skipped.append((f"{table}: row {n}", f"label {label!r} is not one of {', '.join(LABELS)}"))
            continue
        if file in seen:
            result.skipped.append((f"{table}: row {n}", f"{file} is listed twice"))
            continue
        seen.add(file)
        audio = find_audio(d / file)
        if audio is None:
            result.skipped.append((str(d / file), "listed in labels.csv but not found (tried .wav, .flac)"))
            continue
        stem = Path(file).with_suffix("").as_posix().replace("/", "_")
        result.recordings.append(Recording(stem, str(audio), stem, NAME, {"label": label, "file": file}))
    if not result.recordings:
        raise DatasetError(f"{table}: no listed recording could be used"
                           + (f" (first: {result.skipped[0][0]}: {result.skipped[0][1]})" if result.skipped else ""))
    return result
