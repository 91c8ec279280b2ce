"""Shared machinery of the report builders: value cleaning, seeded phrasing, table reading.

A report must state exactly what the metadata states, so every value goes through `clean`
(placeholders such as "nan", "NA", "Unknown" become None and never turn into findings), and
every builder records the findings it stated next to the text.
"""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from ...datasets.base import DatasetError, columns_of  # noqa: F401  (columns_of: used by the builders)
from ...datasets.base import read_table as _read_table

# Spellings that mean "no value" in the shipped tables (pandas writes nan, ICBHI writes NA,
# CirCor writes Unknown, SPRSound's processing writes None for "no events").
PLACEHOLDERS = {"", "nan", "na", "n/a", "none", "null", "unknown", "?"}


class ReportInputError(DatasetError):
    """Bad metadata: names the file / record and what was expected."""


class NothingToReport(ValueError):
    """A record whose metadata holds no reportable finding (skipped, with this reason)."""


# --------------------------------------------------------------------------- values

def raw(v: Any) -> str | None:
    """Stripped string, or None for None/NaN/empty. Keeps placeholders such as 'Unknown'."""
    if v is None:
        return None
    if isinstance(v, float) and math.isnan(v):
        return None
    s = str(v).strip()
    return s or None


def clean(v: Any) -> str | None:
    """Stripped string, or None when the value is missing or a placeholder."""
    s = raw(v)
    if s is None or s.lower() in PLACEHOLDERS:
        return None
    return s


def as_bool(v: Any) -> bool | None:
    s = clean(v)
    if s is None:
        return None
    s = s.lower()
    if s in {"true", "1", "1.0", "yes", "y", "t"}:
        return True
    if s in {"false", "0", "0.0", "no", "n", "f"}:
        return False
    return None


def as_float(v: Any) -> float | None:
    s = clean(v)
    if s is None:
        return None
    try:
        x = float(s)
    except ValueError:
        return None
    return None if math.isnan(x) else x


def fmt_num(x: float, digits: int = 2) -> str:
    """66.0 -> '66', 0.75 -> '0.75': numbers as a person would write them."""
    text = f"{x:.{digits}f}"
    if "." in text:  # strip only decimals: 139.5 at 0 digits is '140', never '14'
        text = text.rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


# --------------------------------------------------------------------------- English

def a_or_an(phrase: str) -> str:
    """Article for a noun phrase, including numbers ('an 8-year-old', 'an 18-year-old')."""
    w = phrase.strip().lower()
    if not w:
        return "a"
    if w[0].isdigit():
        digits = "".join(ch for ch in w.split("-")[0] if ch.isdigit() or ch == ".")
        whole = digits.split(".")[0]
        eleven_or_eighteen = whole[:2] in {"11", "18"} and len(whole) in (2, 5)
        return "an" if whole.startswith("8") or eleven_or_eighteen else "a"
    if w.startswith(("uni", "use", "one", "eu")):
        return "a"
    if w.startswith(("hour", "honest")):
        return "an"
    return "an" if w[0] in "aeiou" else "a"


def with_article(phrase: str) -> str:
    return f"{a_or_an(phrase)} {phrase}"


def join_and(items: Sequence[str], conj: str = "and") -> str:
    items = [i for i in items if i]
    if not items:
        return ""
    if len(items) == 1:
        return items[0]
    return f"{', '.join(items[:-1])} {conj} {items[-1]}"


def sentence(text: str) -> str:
    text = " ".join(text.split())
    if not text:
        return ""
    text = text[0].upper() + text[1:]
    return text if text[-1] in ".!?" else text + "."


def age_from_years(age: float) -> tuple[str, str]:
    """(noun form, adjective form): 66 -> ('66 years', '66-year-old'); 0.75 -> ('9 months', '9-month-old')."""
    if age < 1 / 12:
        n, unit = max(1, round(age * 365.25)), "day"
    elif age < 1:
        n, unit = max(1, round(age * 12)), "month"
    else:
        n, unit = age, "year"
    num = fmt_num(n, 1)
    noun = f"{num} {unit}" + ("" if num == "1" else "s")
    return noun, f"{num}-{unit}-old"


def age_from_days(days: float) -> tuple[str, str]:
    if days < 28:
        n = int(round(days))
        return f"{n} day" + ("" if n == 1 else "s"), f"{n}-day-old"
    return age_from_years(days / 365.25)


SEX = {"m": "male", "male": "male", "f": "female", "female": "female", "other": "other"}


def sex_of(v: Any) -> str | None:
    """'M'/'Male'/'female'/... -> 'male'/'female'/'other'; anything else (pnts, NaN) -> None."""
    s = clean(v)
    return SEX.get(s.lower()) if s else None


# --------------------------------------------------------------------------- phrasing

def stable_seed(seed: int, record_id: str) -> int:
    """Process-independent RNG seed (Python's hash() is salted per process)."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{record_id}".encode("utf-8")).digest()[:8], "big")


class Phrases:
    """Deterministic choice among equivalent phrasings, keyed by (seed, record id).

    `fixed` always takes the first phrasing and the default order: reports with the same findings are then the
    same text, so a teacher's embedding varies only with the findings (varied phrasing halves the CKA of
    MiniLM's CirCor report embeddings with the murmur label: docs/reports.md)."""

    def __init__(self, seed: int, record_id: str, fixed: bool = False):
        self.rng = random.Random(stable_seed(seed, record_id))
        self.fixed = fixed

    def pick(self, *options: Any) -> Any:
        return options[0] if self.fixed else options[self.rng.randrange(len(options))]

    def chance(self, p: float = 0.5) -> bool:
        return False if self.fixed else self.rng.random() < p


@dataclass
class Report:
    """Sentences of one report plus the (field, value) findings they state."""

    sentences: list[str] = field(default_factory=list)
    findings: list[tuple[str, str]] = field(default_factory=list)

    def say(self, text: str, *findings: tuple[str, str]) -> None:
        s = sentence(text)
        if s:
            self.sentences.append(s)
        self.findings.extend(findings)

    def note(self, *findings: tuple[str, str]) -> None:
        self.findings.extend(findings)

    @property
    def text(self) -> str:
        return " ".join(self.sentences)


# --------------------------------------------------------------------------- builders

@dataclass(frozen=True)
class Builder:
    """One dataset's report writer.

    `compose` turns one record into a Report; `read` turns the user's metadata files (the real
    download's layout) into records; `expand` turns records into report units (e.g. one per
    auscultation location) and runs on both paths; `required` are the record fields checked when
    records are given directly.
    """

    name: str
    version: str
    compose: Callable[[dict, Phrases], Report]
    record_id: Callable[[dict], str]
    subject_id: Callable[[dict], str]
    read: Callable[[list[Path]], list[dict]]
    required: tuple[str, ...] = ()
    expand: Callable[[list[dict]], list[dict]] | None = None
    # fields left out of a `clinical` report: how the sound was recorded and who, not what was heard
    non_clinical: tuple[str, ...] = ()

    @property
    def provenance_name(self) -> str:
        return f"{self.name}@{self.version}"


# --------------------------------------------------------------------------- tables

def read_table(path: Path, required: Iterable[str] = ()) -> list[dict]:
    """The datasets' table reader; a bad table is a ReportInputError naming the file and the columns found."""
    return _read_table(path, required, error=ReportInputError)


def expand_paths(paths: Iterable[str | Path], patterns: Sequence[str]) -> list[Path]:
    """Files as given; folders replaced by their files matching `patterns` (sorted, not recursive)."""
    out: list[Path] = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            found = sorted({q for pat in patterns for q in p.glob(pat) if q.is_file()})
            if not found:
                raise ReportInputError(f"{p}: folder holds no file matching {', '.join(patterns)}")
            out.extend(found)
        elif p.is_file():
            out.append(p)
        else:
            raise ReportInputError(f"{p}: no such file or folder")
    return out


def unknown_file(path: Path, dataset: str, expected: str) -> ReportInputError:
    cols = ""
    if path.suffix.lower() in {".csv", ".txt", ".tsv"}:
        try:
            cols = f" (columns: {', '.join(columns_of(path))})"
        except OSError:
            pass
    return ReportInputError(f"{path}: not a recognised {dataset} metadata file{cols}; expected {expected}")
