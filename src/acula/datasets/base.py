"""What every corpus reader returns, and the small file helpers the readers share.

A reader turns a release folder, as published, into `Recording`s: one audio file, the person it
belongs to, and the annotation fields in the release's own vocabulary. Report builders, bench tasks
and `corpus build` all start from these, so a release is parsed in one place only.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

# Users convert corpora to FLAC; a recording is found under its stem with any of these.
AUDIO_EXTENSIONS = (".wav", ".flac")


class DatasetError(ValueError):
    """A release folder or table that cannot be read: the message names the file and the reason."""


@dataclass
class Recording:
    """One audio file of a corpus and what its release says about it."""

    id: str  # unique within the dataset (the release's file stem)
    path: str  # the audio file
    subject: str  # the person: two ids of one person share one subject
    dataset: str
    fields: dict = field(default_factory=dict)  # annotation, in the release's own names


@dataclass
class ReadResult:
    """Recordings read, and those left out with the reason (a batch command records these as skips)."""

    recordings: list[Recording]
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)
    notes: list[str] = field(default_factory=list)

    def raise_first(self) -> None:
        """--strict: the first skipped file becomes the error."""
        if self.skipped:
            path, why = self.skipped[0]
            raise DatasetError(f"{path}: {why}")


class AudioIndex:
    """Audio files under a folder by stem, found once: `find('x')` -> x.wav or x.flac.

    A stem present twice (a WAV beside its FLAC copy) resolves to the first extension in
    AUDIO_EXTENSIONS, so a folder in conversion still reads each recording once.
    """

    def __init__(self, folder: Path, recursive: bool = True):
        self.folder = Path(folder)
        self._by_stem: dict[str, Path] = {}
        files = self.folder.rglob("*") if recursive else self.folder.glob("*")
        rank = {e: i for i, e in enumerate(AUDIO_EXTENSIONS)}
        for p in sorted(files):
            ext = p.suffix.lower()
            if ext in rank and p.is_file():
                old = self._by_stem.get(p.stem)
                if old is None or rank[ext] < rank[old.suffix.lower()]:
                    self._by_stem[p.stem] = p

    def __len__(self) -> int:
        return len(self._by_stem)

    def find(self, stem: str) -> Path | None:
        return self._by_stem.get(stem)

    def missing_message(self, stem: str) -> str:
        tried = ", ".join(stem + e for e in AUDIO_EXTENSIONS)
        return f"no audio for {stem} under {self.folder} (tried {tried})"


def find_audio(path: str | Path) -> Path | None:
    """`path` itself if it exists, else the same stem with another audio extension beside it."""
    p = Path(path)
    if p.is_file():
        return p
    for ext in AUDIO_EXTENSIONS:
        q = p.with_suffix(ext)
        if q.is_file():
            return q
    return None


def require_audio(path: str | Path, what: str = "") -> Path:
    found = find_audio(path)
    if found is None:
        p = Path(path)
        tried = ", ".join(p.with_suffix(e).name for e in AUDIO_EXTENSIONS)
        raise DatasetError(f"{what + ': ' if what else ''}audio {p} not found (tried {tried} in {p.parent})")
    return found


def no_audio_error(dataset: str, folder: Path, first_missing: str) -> DatasetError:
    tried = ", ".join(first_missing + e for e in AUDIO_EXTENSIONS)
    return DatasetError(f"{dataset}: no audio found under {folder}: the first listed recording {first_missing} "
                        f"is missing (tried {tried})")


# --------------------------------------------------------------------------------------------------------
# tables


def sniff_delimiter(first_line: str) -> str:
    if "\t" in first_line:
        return "\t"
    if ";" in first_line and "," not in first_line:
        return ";"
    return ","


def read_table(path: Path, required: Iterable[str] = (), error: type[DatasetError] = DatasetError) -> list[dict]:
    """Rows of a csv/tsv as dicts of strings (BOM, CRLF, ';' and tab separators handled).

    A missing required column raises `error` naming the file, the column and the columns found.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        text = path.read_text(encoding="latin-1")
    except OSError as e:
        raise error(f"{path}: cannot read ({e.strerror or e})") from None
    if not text.strip():
        raise error(f"{path}: empty file")
    rows = list(csv.reader(io.StringIO(text), delimiter=sniff_delimiter(text.split("\n", 1)[0])))
    cols = [c.strip() for c in rows[0]]
    missing = [c for c in required if c not in cols]
    if missing:
        raise error(f"{path}: missing column(s) {', '.join(repr(m) for m in missing)}; "
                    f"found columns: {', '.join(repr(c) for c in cols)}")
    return [{c: (r[j].strip() if j < len(r) else "") for j, c in enumerate(cols) if c}
            for r in rows[1:] if any(x.strip() for x in r)]


def columns_of(path: Path) -> list[str]:
    """Header of a csv/tsv (first line), for telling files apart by their columns."""
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as f:
        first = f.readline()
    return [c.strip() for c in next(csv.reader([first], delimiter=sniff_delimiter(first)), [])]


def side_tables(dataset_dir: Path, name: str, pattern: str, first: bool = True) -> list[Path]:
    """Extra tables a release does not ship (a diagnosis list, a later outcome column), looked for beside
    the release and in a `metadata/<name>/` folder next to the data root. The nearest folder with a match wins
    when `first` (one table split in parts, e.g. train + valid), else every match, nearest first."""
    d = Path(dataset_dir)
    folders = (d, d / "metadata", d.parent / "metadata" / name, d.parent.parent / "metadata" / name)
    out: list[Path] = []
    for folder in folders:
        found = sorted(folder.glob(pattern)) if folder.is_dir() else []
        if found and first:
            return found
        out += found
    return out
