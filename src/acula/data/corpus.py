"""`acula corpus build`: reports of several datasets -> one alignment manifest, with a leakage guard.

Reports state downstream labels (ICBHI and KAUH diagnoses, TR COPD stage, Coswara smoker/sex),
so an alignment corpus holding a downstream *test* recording, or any recording of a test subject,
contaminates the linear-probe results (docs/protocol.md#published-bugs, item 13). The guard takes the evaluation test
splits, finds every subject that owns a listed test item, drops all of that subject's recordings
and reports what each dataset lost (`OUT.leakage.json`).

Subject ids are namespaced by dataset (`icbhi:101`), so patient 101 of ICBHI and patient 101 of
another dataset stay different people; report variants of one dataset share a namespace
(`icbhi-cycle` -> `icbhi`).

    result = build_corpus(["icbhi.csv", "kauh.csv"], "corpus.csv", audio_roots={"icbhi": "ICBHI_final_database"},
                          exclude=["icbhi=ICBHI_challenge_train_test.txt"])
    result.write("corpus.csv")
"""

from __future__ import annotations

import csv
import glob
import io
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from .. import _io
from ..datasets.base import find_audio
from ..datasets.manifest import write_manifest

REQUIRED = ("record_id", "subject_id", "dataset", "Gen_Report")
CORE = ("audio_path", "Gen_Report", "subject_id", "dataset", "record_id", "source_subject_id")
SUBJECT_NAMESPACE = {"icbhi-cycle": "icbhi", "circor-location": "circor"}
DEFAULT_PATTERN = "{record_id}.wav"
SPLIT_WORDS = {"train", "training", "val", "valid", "validation", "dev", "test", "testing"}
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".webm", ".aiff", ".aif")


class CorpusError(ValueError):
    """Bad corpus input: names the file, row and what was expected."""


def namespace(dataset: str) -> str:
    return SUBJECT_NAMESPACE.get(dataset, dataset)


def subject_key(dataset: str, subject_id: str) -> str:
    """'icbhi', '101' -> 'icbhi:101' (ids already carrying the namespace are kept)."""
    ns = namespace(dataset)
    sid = str(subject_id).strip()
    return sid if sid.startswith(f"{ns}:") else f"{ns}:{sid}"


def record_base(record_id: str) -> str:
    """A cycle or segment id names its recording before '#'/'@' ('101_1b1_Al_sc_Meditron#3')."""
    return re.split(r"[#@]", record_id, maxsplit=1)[0]


def _read_csv(path: Path) -> tuple[list[str], list[dict]]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise CorpusError(f"{path}: file not found") from None
    except UnicodeDecodeError as e:
        raise CorpusError(f"{path}: not UTF-8 text (byte {e.start})") from None
    first = text.split("\n", 1)[0]
    sep = "\t" if "\t" in first else (";" if ";" in first and "," not in first else ",")
    reader = csv.DictReader(io.StringIO(text), delimiter=sep)
    cols = [c.strip() for c in (reader.fieldnames or [])]
    reader.fieldnames = cols
    return cols, [{k: (v or "").strip() for k, v in r.items() if k} for r in reader]


def _parse_assignments(items: Iterable[str], what: str) -> dict[str, str]:
    """['icbhi=/data/x', '/data/all'] -> {'icbhi': '/data/x', '*': '/data/all'}."""
    out = {}
    for item in items or ():
        name, sep, value = str(item).partition("=")
        if not sep:
            name, value = "*", item
        if not value:
            raise CorpusError(f"{what} {item!r}: expected DATASET=VALUE or VALUE")
        out[name.strip()] = value
    return out


# =============================================================================== audio paths

@dataclass
class AudioResolver:
    """record -> audio file(s): an `audio_path` column (relative to --audio-root or the CSV's folder),
    else `--audio-root DATASET=DIR` joined with the pattern (default "{record_id}.wav"; a glob such as
    "{record_id}_*.wav" gives every matching file, e.g. each auscultation location of a CirCor patient)."""

    roots: dict[str, str] = field(default_factory=dict)
    patterns: dict[str, str] = field(default_factory=dict)

    def root(self, dataset: str) -> Path | None:
        r = self.roots.get(dataset) or self.roots.get(namespace(dataset)) or self.roots.get("*")
        return Path(r).expanduser() if r else None

    def paths(self, row: dict, csv_path: Path, line: int) -> list[Path]:
        ds = row["dataset"]
        given = row.get("audio_path", "")
        if given:
            p = Path(given).expanduser()
            p = p if p.is_absolute() else (self.root(ds) or csv_path.parent) / p
            return [find_audio(p) or p]  # a corpus converted to FLAC keeps its WAV names in the tables
        root = self.root(ds)
        if root is None:
            raise CorpusError(f"{csv_path}: row {line} (dataset {ds!r}) has no audio_path; pass --audio-root "
                              f"{ds}=DIR (files named {self.pattern(ds)!r} by default)")
        try:
            name = self.pattern(ds).format_map(row)
        except KeyError as e:
            raise CorpusError(f"{csv_path}: audio pattern {self.pattern(ds)!r} names column {e.args[0]!r}, "
                              f"which the reports lack (columns: {', '.join(row)})") from None
        if any(ch in name for ch in "*?["):
            found = sorted(Path(p) for p in glob.glob(str(root / name)))
            return found or [root / name]  # a pattern with no match is reported as missing audio
        return [find_audio(root / name) or root / name]

    def pattern(self, dataset: str) -> str:
        return self.patterns.get(dataset) or self.patterns.get(namespace(dataset)) or self.patterns.get("*") \
            or DEFAULT_PATTERN


# =============================================================================== test splits

@dataclass
class SplitEntry:
    kind: str  # "subject" | "record" | "audio" | "any"
    value: str
    dataset: str | None


@dataclass
class SplitSpec:
    """One --exclude-test file and the test items it lists."""

    path: Path
    dataset: str | None
    entries: list[SplitEntry]
    matched: int = 0
    unmatched: list[str] = field(default_factory=list)


def read_test_spec(spec: str, test_splits: Sequence[str] = ("test",)) -> SplitSpec:
    """`[DATASET=]FILE`: a CSV with subject_id / record_id / audio_path columns (and optionally `split`,
    `dataset`), or a plain list with one id per line, optionally followed by its split word
    (ICBHI's `ICBHI_challenge_train_test.txt`)."""
    ds, sep, file = spec.partition("=")
    if not sep or not ds or "/" in ds or os.sep in ds:
        ds, file = None, spec
    path = Path(file).expanduser()
    if not path.is_file():
        raise CorpusError(f"--exclude-test {spec!r}: {path} not found")
    splits = {s.lower() for s in test_splits}
    first = path.read_text(encoding="utf-8-sig", errors="replace").split("\n", 1)[0]
    header = [c.strip().lower() for c in re.split(r"[,\t;]", first)]
    id_cols = [c for c in ("subject_id", "record_id", "audio_path") if c in header]
    entries: list[SplitEntry] = []
    if id_cols:
        cols, rows = _read_csv(path)
        lower = {c.lower(): c for c in cols}
        for r in rows:
            if "split" in lower and r.get(lower["split"], "").lower() not in splits:
                continue
            rds = r.get(lower["dataset"], "") if "dataset" in lower else ""
            for c in id_cols:
                if v := r.get(lower[c], ""):
                    entries.append(SplitEntry(c.removesuffix("_id").removesuffix("_path"), v, rds or ds))
    elif any(h in ("split", "dataset", "subject", "patient_id", "id") for h in header) and len(header) > 1:
        raise CorpusError(f"{path}: a test-split table needs a subject_id, record_id or audio_path column "
                          f"(found: {', '.join(header)})")
    else:
        for line in path.read_text(encoding="utf-8-sig", errors="replace").splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            # 'ID', 'ID<tab>SPLIT' or 'ID SPLIT'; an id may itself hold spaces and commas (KAUH file names)
            m = re.match(r"^(.*?)[\s,]+(\S+)$", line)
            if m and m.group(2).lower() in SPLIT_WORDS:
                if m.group(2).lower() not in splits:
                    continue
                line = m.group(1).strip()
            entries.append(SplitEntry("any", line, ds))
    return SplitSpec(path, ds, entries)


# =============================================================================== build

@dataclass
class DatasetCounts:
    reports: int = 0
    empty_report: int = 0
    missing_audio: int = 0
    test_excluded: int = 0
    test_subjects: int = 0
    duplicate: int = 0
    kept: int = 0


@dataclass
class CorpusResult:
    rows: list[dict]
    counts: dict[str, DatasetCounts]
    dropped: list[dict]
    specs: list[SplitSpec]
    test_splits: list[str]
    guard: bool

    def table(self) -> str:
        head = ("dataset", "reports", "empty", "no audio", "test rows", "test subj", "duplicate", "kept")
        lines = [head] + [(ds, *(str(v) for v in vars(c).values())) for ds, c in sorted(self.counts.items())]
        tot = [sum(getattr(c, k) for c in self.counts.values()) for k in vars(DatasetCounts())]
        lines.append(("total", *(str(v) for v in tot)))
        widths = [max(len(r[i]) for r in lines) for i in range(len(head))]
        fmt = lambda r: "  ".join(s.ljust(w) if i == 0 else s.rjust(w) for i, (s, w) in enumerate(zip(r, widths)))
        return "\n".join(fmt(r) for r in lines)

    def leakage_report(self, manifest: str | Path) -> dict:
        return {
            "manifest": str(manifest),
            "rows": len(self.rows),
            "leakage_guard": self.guard,
            "test_splits": self.test_splits,
            "datasets": {ds: vars(c) for ds, c in sorted(self.counts.items())},
            "exclude_test": [{"file": str(s.path), "dataset": s.dataset, "entries": len(s.entries),
                              "matched_entries": s.matched, "unmatched_entries": len(s.unmatched),
                              "unmatched_examples": s.unmatched[:20]} for s in self.specs],
            "dropped": self.dropped,
        }

    def write(self, out: str | Path) -> Path:
        """Manifest (atomic) and OUT.leakage.json beside it; returns the leakage report path."""
        out = Path(out)
        cols = list(CORE) + [c for c in dict.fromkeys(k for r in self.rows for k in r) if c not in CORE]
        write_manifest(out, self.rows, columns=cols)
        report = out.with_suffix(".leakage.json")
        _io.write_json(report, self.leakage_report(out))
        return report


class _Index:
    """Lookups from test items to corpus rows (all rows, including ones dropped for missing audio)."""

    def __init__(self, rows: list[dict]):
        self.by_subject: dict[str, list[int]] = {}
        self.by_record: dict[str, list[int]] = {}
        self.by_path: dict[str, list[int]] = {}
        self.by_name: dict[str, list[int]] = {}
        for i, r in enumerate(rows):
            self.by_subject.setdefault(r["subject_id"], []).append(i)
            for rid in {r["record_id"], record_base(r["record_id"])}:
                self.by_record.setdefault(rid, []).append(i)
            p = Path(r["_audio"])
            self.by_path.setdefault(os.path.abspath(p), []).append(i)
            for name in {p.name, p.stem}:
                self.by_name.setdefault(name, []).append(i)
        self.rows = rows
        self.namespaces = {namespace(r["dataset"]) for r in rows}
        self.raw_subjects = {r["source_subject_id"] for r in rows}

    def match(self, e: SplitEntry, spec_dir: Path) -> set[int]:
        scope = e.dataset
        hits: set[int] = set()
        v = e.value
        if e.kind in ("subject", "any"):
            ns, sep, rest = v.partition(":")
            if sep and ns in self.namespaces:
                hits |= set(self.by_subject.get(v, []))
            elif scope:
                hits |= set(self.by_subject.get(subject_key(scope, v), []))
            elif e.kind == "subject":
                raise CorpusError(f"test subject {v!r} has no dataset: write it as DATASET:ID, add a dataset "
                                  "column or pass the file as DATASET=FILE (equal ids in two datasets are "
                                  "different people)")
        if e.kind in ("record", "any"):
            hits |= set(self.by_record.get(v, []))
        if e.kind in ("audio", "any"):
            p = Path(v).expanduser()
            if p.is_absolute() or len(p.parts) > 1:
                full = p if p.is_absolute() else spec_dir / p
                hits |= set(self.by_path.get(os.path.abspath(full), []))
            hits |= set(self.by_name.get(p.name, []))
            if e.kind == "any" or p.suffix.lower() not in AUDIO_EXTENSIONS:
                hits |= set(self.by_name.get(p.stem, []))
        if scope:
            hits = {i for i in hits if namespace(self.rows[i]["dataset"]) == namespace(scope)}
        elif not hits and e.kind == "any" and v in self.raw_subjects:
            raise CorpusError(f"test item {v!r} matches no record or audio file but is a subject id; say which "
                              "dataset it belongs to (DATASET=FILE, a dataset column or DATASET:ID)")
        return hits


def build_corpus(reports: Sequence[str | Path], out: str | Path, audio_roots: dict[str, str] | None = None,
                 audio_patterns: dict[str, str] | None = None, exclude: Sequence[str] = (),
                 test_splits: Sequence[str] = ("test",), allow_no_exclusion: bool = False) -> CorpusResult:
    """Merge report CSVs into manifest rows; see the module docstring. Nothing is written here."""
    if not reports:
        raise CorpusError("no report CSVs given (--reports)")
    if not exclude and not allow_no_exclusion:
        raise CorpusError("no downstream test splits given: pass --exclude-test FILE... (the evaluation tasks' test "
                          "splits), or --no-exclusion if this corpus will never be evaluated on")
    out = Path(out)
    resolver = AudioResolver(dict(audio_roots or {}), dict(audio_patterns or {}))
    specs = [read_test_spec(s, test_splits) for s in exclude]

    rows: list[dict] = []
    counts: dict[str, DatasetCounts] = {}
    dropped: list[dict] = []
    for csv_path in map(Path, reports):
        cols, table = _read_csv(csv_path)
        missing = [c for c in REQUIRED if c not in cols]
        if missing:
            raise CorpusError(f"{csv_path}: missing column(s) {', '.join(map(repr, missing))}; found "
                              f"{', '.join(map(repr, cols)) or 'none'}. Expected a reports CSV from "
                              f"`acula reports build` (record_id, subject_id, dataset, Gen_Report[, audio_path])")
        for line, r in enumerate(table, start=2):
            for c in ("record_id", "subject_id", "dataset"):
                if not r.get(c):
                    raise CorpusError(f"{csv_path}: row {line} has an empty {c!r}")
            ds = r["dataset"]
            counts.setdefault(ds, DatasetCounts()).reports += 1
            for p in resolver.paths(r, csv_path, line):
                row = {**{k: v for k, v in r.items() if k != "audio_path"}, "_audio": str(p), "_src": str(csv_path),
                       "source_subject_id": r["subject_id"], "subject_id": subject_key(ds, r["subject_id"])}
                rows.append(row)

    def drop(r: dict, reason: str) -> None:
        dropped.append({"dataset": r["dataset"], "record_id": r["record_id"], "audio_path": r["_audio"],
                        "reason": reason})

    # leakage guard first, on every row: a test item whose audio is missing still names its subject
    index = _Index(rows)
    test_rows: set[int] = set()
    for spec in specs:
        for e in spec.entries:
            hits = index.match(e, spec.path.parent)
            if hits:
                spec.matched += 1
                test_rows |= hits
            else:
                spec.unmatched.append(e.value)
    test_subjects = {rows[i]["subject_id"] for i in test_rows}
    for ds, c in counts.items():
        c.test_subjects = len({r["subject_id"] for r in rows if r["dataset"] == ds and r["subject_id"] in test_subjects})

    kept, seen = [], {}
    for r in rows:
        c = counts[r["dataset"]]
        if not r.get("Gen_Report", "").strip():
            c.empty_report += 1
            drop(r, "empty report")
        elif r["subject_id"] in test_subjects:
            c.test_excluded += 1
            drop(r, "subject in a downstream test split")
        elif not Path(r["_audio"]).is_file():
            c.missing_audio += 1
            drop(r, "audio file not found")
        elif (key := (os.path.abspath(r["_audio"]), r["Gen_Report"])) in seen:
            c.duplicate += 1
            drop(r, f"duplicate of record {seen[key]}")
        else:
            seen[key] = r["record_id"]
            c.kept += 1
            kept.append(r)

    out_dir = out.resolve().parent
    manifest_rows = []
    for r in kept:
        p = Path(r["_audio"]).resolve()
        audio = os.path.relpath(p, out_dir) if p.is_relative_to(out_dir) else str(p)
        manifest_rows.append({"audio_path": audio, **{k: v for k, v in r.items() if not k.startswith("_")}})
    return CorpusResult(manifest_rows, counts, dropped, specs, list(test_splits), guard=bool(specs))
