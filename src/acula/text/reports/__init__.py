"""Clinical reports written from recording metadata, one builder per dataset.

AcuLa aligns audio embeddings to a language model's embeddings of short clinical reports. Only
CirCor ships LLM-written reports, so the others are templated here from the metadata (docs/protocol.md#reports).
Every report states exactly what the metadata states: missing or 'Unknown' values never become
findings, absent findings are stated only when the metadata says absent, and the builder lists
the (field, value) findings it stated so a later LLM rewrite can be checked against them.
Phrasing varies between records, chosen deterministically from sha256(f"{seed}:{record_id}").

`profile="clinical"` leaves out what says how and from whom a sound was recorded (device,
acquisition mode, sex, height, weight; each builder's `non_clinical`), as the published AcuLa
reports did (ICBHI: location, crackles, wheezes, diagnosis; CirCor: murmur and outcome). Such
facts are audible (a stethoscope's colouring), so a report that states them teaches the encoder
to tell devices apart: on the demo corpus the device explained most of the lung reports' Gram
(CKA 0.63) and the crackle label little (0.11; 0.36 after affirmative phrasing). `full` (the default) states every field.

    rows = build_reports("circor", ["training_data.csv"], seed=0)
    write_reports_csv(rows, "circor_reports.csv")
"""

from __future__ import annotations

import csv
import io
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from ... import _io
from . import bmd, circor, coswara, coughvid, coviduk, hflung, icbhi, kauh, sprsound, tr, yaseen, zchsound
from ._base import Builder, NothingToReport, Phrases, ReportInputError, raw, read_table

__all__ = ["DATASETS", "BUILDERS", "build_reports", "build_report_table", "report_for", "findings_of",
           "read_metadata", "write_reports_csv", "register_cli", "ReportInputError", "NothingToReport", "BuildResult"]

BUILDERS: dict[str, Builder] = {
    "icbhi": icbhi.RECORDING,
    "icbhi-cycle": icbhi.CYCLE,
    "circor": circor.PATIENT,
    "circor-location": circor.LOCATION,
    "hf-lung": hflung.BUILDER,
    "coviduk": coviduk.BUILDER,
    "coughvid": coughvid.BUILDER,
    "sprsound": sprsound.BUILDER,
    "zchsound": zchsound.BUILDER,
    "kauh": kauh.BUILDER,
    "tr": tr.BUILDER,
    "coswara": coswara.BUILDER,
    "bmd": bmd.BUILDER,
    "yaseen": yaseen.BUILDER,
}
# The synthetic corpus borrows the real column names, so it reuses the real builders; its rows
# come as a plain table (or records), with no real-layout detection.
SYNTHETIC = {"synth-circor": "circor", "synth-icbhi": "icbhi-cycle", "synth-coughvid": "coughvid"}
DATASETS: tuple[str, ...] = tuple(BUILDERS) + tuple(SYNTHETIC)
_CORE = ("record_id", "subject_id", "dataset", "Gen_Report", "provenance", "findings")


def _builder(dataset: str) -> Builder:
    key = SYNTHETIC.get(dataset, dataset)
    if key not in BUILDERS:
        raise KeyError(f"unknown report dataset {dataset!r}; known: {', '.join(DATASETS)}")
    return BUILDERS[key]


def read_metadata(dataset: str, metadata_paths: Iterable[str | Path]) -> list[dict]:
    """Records of `dataset` from the user's metadata files (real download layouts, told apart by name/columns)."""
    b = _builder(dataset)
    paths = [Path(p) for p in metadata_paths]
    if not paths:
        raise ReportInputError(f"{dataset}: no metadata files given")
    if dataset in SYNTHETIC:
        records = []
        for p in paths:
            records.extend(read_table(p, required=b.required))
        return records
    return b.read(paths)


@dataclass
class BuildResult:
    rows: list[dict] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (record_id, reason)

    def summary(self) -> str:
        reasons: dict[str, int] = {}
        for _, why in self.skipped:
            reasons[why] = reasons.get(why, 0) + 1
        detail = "; ".join(f"{n} {why}" for why, n in sorted(reasons.items(), key=lambda kv: -kv[1]))
        return f"{len(self.rows)} reports written, {len(self.skipped)} rows skipped" + (f" ({detail})" if detail else "")


PROFILES = ("full", "clinical")
PHRASINGS = ("varied", "fixed")


def _compose(b: Builder, rec: dict, ph: Phrases, profile: str):
    if profile not in PROFILES:
        raise ValueError(f"unknown report profile {profile!r}; choose from {', '.join(PROFILES)}")
    if profile == "clinical":
        rec = {k: v for k, v in rec.items() if k not in b.non_clinical}
    return b.compose(rec, ph)


def build_report_table(dataset: str, metadata_paths: list[str | Path] | None = None,
                       records: list[dict] | None = None, seed: int = 0, profile: str = "full",
                       phrasing: str = "varied") -> BuildResult:
    """Reports for every record, plus the records skipped and why (nothing reportable, duplicate id).
    `phrasing="fixed"`: one wording per finding (Phrases)."""
    b = _builder(dataset)
    if phrasing not in PHRASINGS:
        raise ValueError(f"unknown phrasing {phrasing!r}; choose from {', '.join(PHRASINGS)}")
    if (metadata_paths is None) == (records is None):
        raise ValueError("give exactly one of metadata_paths or records")
    if records is None:
        recs = read_metadata(dataset, metadata_paths)
    else:
        recs = [dict(r) for r in records]
        for i, r in enumerate(recs):
            missing = [k for k in b.required if k not in r]
            if missing:
                raise ReportInputError(f"{dataset} record {i}: missing field(s) {', '.join(map(repr, missing))}; "
                                       f"fields: {', '.join(map(str, r))}")
    if b.expand is not None:
        recs = b.expand(recs)
    out = BuildResult()
    seen: set[str] = set()
    for rec in recs:
        rid = b.record_id(rec)
        if rec.get("_skip"):  # the dataset reader could not use this file (missing audio or annotation)
            out.skipped.append((rid, rec["_skip"]))
            continue
        if rid in seen:
            out.skipped.append((rid, "duplicate record id"))
            continue
        seen.add(rid)
        try:
            rep = _compose(b, rec, Phrases(seed, rid, fixed=phrasing == "fixed"), profile)
        except NothingToReport as e:
            out.skipped.append((rid, str(e)))
            continue
        # a record may carry its own subject id (the synthetic manifest does): it decides the splits
        sid = raw(rec.get("subject_id")) or b.subject_id(rec)
        provenance = (f"{b.provenance_name};seed={seed}" + (f";profile={profile}" if profile != "full" else "")
                      + (f";phrasing={phrasing}" if phrasing != "varied" else ""))
        row: dict[str, Any] = {"record_id": rid, "subject_id": sid, "dataset": dataset,
                               "Gen_Report": rep.text, "provenance": provenance, "findings": rep.findings}
        for k, v in rec.items():
            if k not in row and not str(k).startswith("_"):
                row[k] = v
        out.rows.append(row)
    return out


def build_reports(dataset: str, metadata_paths: list[str | Path] | None = None,
                  records: list[dict] | None = None, seed: int = 0, profile: str = "full") -> list[dict]:
    """Rows with record_id, subject_id, dataset, Gen_Report, provenance, findings and the source fields."""
    return build_report_table(dataset, metadata_paths, records, seed, profile).rows


def _one(dataset: str, record: dict, seed: int, profile: str = "full"):
    b = _builder(dataset)
    recs = b.expand([dict(record)]) if b.expand is not None else [dict(record)]
    if len(recs) != 1:
        raise ValueError(f"{dataset}: record expands into {len(recs)} reports; pass one unit (e.g. with its location)")
    rec = recs[0]
    return _compose(b, rec, Phrases(seed, b.record_id(rec)), profile)


def report_for(dataset: str, record: dict, seed: int = 0, profile: str = "full") -> str:
    """Report text for one record (raises NothingToReport when the metadata states nothing)."""
    return _one(dataset, record, seed, profile).text


def findings_of(dataset: str, record: dict, seed: int = 0, profile: str = "full") -> list[tuple[str, str]]:
    """The (field, value) findings the report for `record` states; the same for every seed."""
    return _one(dataset, record, seed, profile).findings


def write_reports_csv(rows: list[dict], out_path: str | Path) -> None:
    """Atomic CSV: core columns first, then every source field; findings as JSON."""
    cols = list(_CORE)
    for r in rows:
        for k in r:
            if k not in cols:
                cols.append(k)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    w.writeheader()
    for r in rows:
        out = {}
        for k in cols:
            v = r.get(k)
            if k == "findings" and v is not None:
                v = json.dumps([list(f) for f in v])
            out[k] = "" if raw(v) is None else v
        w.writerow(out)
    _io.write_text(out_path, buf.getvalue())


def register_cli(subparsers) -> None:
    """`acula reports build --dataset NAME --metadata PATH [PATH...] --out FILE.csv [--seed N]`."""
    p = subparsers.add_parser("reports", help="clinical reports from dataset metadata")
    sub = p.add_subparsers(dest="reports_command", required=True)
    b = sub.add_parser("build", help="write one templated report per record to a CSV")
    b.add_argument("--dataset", required=True, choices=DATASETS)
    b.add_argument("--metadata", required=True, nargs="+", help="metadata files or folders of the real download")
    b.add_argument("--out", required=True, help="output CSV")
    b.add_argument("--seed", type=int, default=0, help="phrasing seed")
    b.add_argument("--profile", default="full", choices=PROFILES,
                   help="full: every field; clinical: leave out device, acquisition mode and sex (as published)")
    b.add_argument("--phrasing", default="varied", choices=PHRASINGS,
                   help="varied: equivalent wordings chosen per record by --seed; fixed: one wording per finding")
    from ..rewrite import add_rewrite_args

    b.add_argument("--strict", action="store_true",
                   help="fail (nothing written) if any record is skipped (nothing reportable, duplicate id)")
    add_rewrite_args(b)
    b.set_defaults(func=_cli_build)


def _cli_build(args) -> int:
    try:
        res = build_report_table(args.dataset, metadata_paths=args.metadata, seed=args.seed, profile=args.profile,
                                 phrasing=args.phrasing)
    except ReportInputError as e:
        print(f"acula reports build: error: {e}", file=sys.stderr)
        return 2
    if args.strict and res.skipped:
        rid, why = res.skipped[0]
        print(f"acula reports build: error: --strict: {len(res.skipped)} record(s) skipped, first: {rid}: {why}; "
              f"nothing written", file=sys.stderr)
        return 2
    from ..rewrite import apply_rewrite

    write_reports_csv(apply_rewrite(res.rows, args), args.out)
    print(f"{args.dataset}: {res.summary()} -> {args.out}")
    return 0
