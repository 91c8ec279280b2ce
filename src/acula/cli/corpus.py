"""`acula corpus build --reports A.csv B.csv --exclude-test SPLITS... --out manifest.csv` (docs/corpus.md)."""

from __future__ import annotations

from ._common import add_strict_arg

DEFAULT_PATTERN = "{record_id}.wav"  # = acula.data.corpus.DEFAULT_PATTERN (tests/test_cli.py checks), for the help


def register(sub) -> None:
    p = sub.add_parser("corpus", help="merge report CSVs into one alignment manifest (with leakage guard)")
    csub = p.add_subparsers(dest="corpus_command", required=True)
    b = csub.add_parser("build", help="merge datasets, drop every recording of every downstream test subject")
    b.add_argument("--reports", nargs="+", required=True, help="report CSVs from `acula reports build`")
    b.add_argument("--exclude-test", nargs="+", default=[], metavar="[DATASET=]FILE",
                   help="test splits: CSVs with subject_id/record_id/audio_path (+ split, dataset) columns or "
                        "plain id lists ('ID' or 'ID SPLIT' per line)")
    b.add_argument("--test-split", nargs="+", default=["test"], help="split names that count as test (default: test)")
    b.add_argument("--no-exclusion", action="store_true", help="build without a leakage guard (not for evaluation)")
    b.add_argument("--audio-root", nargs="+", default=[], metavar="[DATASET=]DIR",
                   help="folder of a dataset's audio (relative audio_path values resolve against it)")
    b.add_argument("--audio-pattern", nargs="+", default=[], metavar="[DATASET=]PATTERN",
                   help=f"file name from report columns, default {DEFAULT_PATTERN!r}; globs allowed")
    add_strict_arg(b, "fail (nothing written) on any skipped row: empty report, missing audio, duplicate")
    b.add_argument("--out", required=True, help="output manifest CSV (OUT.leakage.json is written beside it)")
    b.set_defaults(func=cmd_build)


def cmd_build(args) -> int:
    from ..data.corpus import CorpusError, _parse_assignments, build_corpus

    result = build_corpus(args.reports, args.out, audio_roots=_parse_assignments(args.audio_root, "--audio-root"),
                          audio_patterns=_parse_assignments(args.audio_pattern, "--audio-pattern"),
                          exclude=args.exclude_test, test_splits=args.test_split,
                          allow_no_exclusion=args.no_exclusion)
    print(result.table())
    if args.strict:  # test-subject exclusions are the guard working, not bad input
        bad = [d for d in result.dropped if d["reason"] != "subject in a downstream test split"]
        if bad:
            raise CorpusError(f"--strict: {len(bad)} row(s) skipped, first: {bad[0]['dataset']} record "
                              f"{bad[0]['record_id']} ({bad[0]['audio_path']}): {bad[0]['reason']}; nothing written")
    if not result.rows:
        raise CorpusError("no recordings left (see the table above); nothing written")
    report = result.write(args.out)
    for s in result.specs:
        if s.unmatched:
            print(f"note: {len(s.unmatched)} of {len(s.entries)} test items in {s.path} match no report row "
                  f"(e.g. {', '.join(s.unmatched[:3])}); fine if those recordings are not in this corpus")
    print(f"{len(result.rows)} recordings -> {args.out}; leakage report: {report}")
    return 0
