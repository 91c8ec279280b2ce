"""Manifest CSVs: read with clear, row-numbered errors.

The alignment manifest has the published columns `audio_path` and `Gen_Report` plus
`subject_id`, `dataset` and label columns. Relative audio paths are resolved against the
manifest's folder, so a corpus can be moved as a whole.
"""

from __future__ import annotations

import csv
from pathlib import Path


class ManifestError(ValueError):
    pass


def read_manifest(path: str | Path, required: tuple[str, ...] = ("audio_path",), resolve: bool = True) -> list[dict]:
    """Rows as dicts. Missing columns, non-UTF-8 text, empty required cells and duplicate audio paths are errors."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: manifest not found")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        line = path.read_bytes()[: e.start].count(b"\n") + 1
        raise ManifestError(f"{path}: line {line} is not valid UTF-8 text") from None
    reader = csv.DictReader(text.splitlines())
    cols = reader.fieldnames or []
    missing = [c for c in required if c not in cols]
    if missing:
        raise ManifestError(f"{path}: missing column(s) {', '.join(missing)} (has: {', '.join(cols) or 'none'})")
    rows, seen = [], {}
    for n, row in enumerate(reader, start=2):  # line 1 is the header
        for c in required:
            if not (row.get(c) or "").strip():
                raise ManifestError(f"{path}: row {n} has an empty {c!r}")
        if resolve and row.get("audio_path"):
            p = Path(row["audio_path"])
            row["audio_path"] = str(p if p.is_absolute() else path.parent / p)
        key = (row.get("audio_path"), row.get("Gen_Report"))
        if key in seen:
            raise ManifestError(f"{path}: row {n} duplicates row {seen[key]} ({row.get('audio_path')})")
        seen[key] = n
        rows.append(row)
    if not rows:
        raise ManifestError(f"{path}: no rows")
    return rows


def write_manifest(path: str | Path, rows: list[dict], columns: list[str] | None = None) -> None:
    from .._io import atomic_path

    columns = columns or list(dict.fromkeys(k for r in rows for k in r))
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
            w.writeheader()
            w.writerows(rows)
