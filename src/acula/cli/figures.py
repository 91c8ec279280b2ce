"""`acula figures bars ...`, `acula figures roc ...` and `acula figures map ...` (docs/finetune.md, docs/bench.md)."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("figures", help="figures: result bars, ROC curves, embedding maps")
    fsub = p.add_subparsers(dest="figure", required=True)
    for name, func, files, what, help_ in (
            ("bars", cmd_bars, "results", "results.csv files, one bar per file and task",
             "grouped bars of results.csv files (acula bench / finetune)"),
            ("roc", cmd_roc, "scores", "roc_scores.npz files written by acula bench",
             "ROC curves per task from roc_scores.npz files (acula bench), one curve per run")):
        c = fsub.add_parser(name, help=help_)
        c.add_argument(files, nargs="+", help=what)
        c.add_argument("--labels", default=None, help="comma-separated names of the runs (default: folder names)")
        c.add_argument("--title", default=None)
        c.add_argument("--out", required=True, help="output .png")
        c.set_defaults(func=func)
    m = fsub.add_parser("map", help="t-SNE map of an `acula embed` .npz coloured by a manifest column")
    m.add_argument("embeddings", help=".npz written by acula embed")
    m.add_argument("--manifest", required=True, help="CSV with audio_path and the label column")
    m.add_argument("--label-column", required=True)
    m.add_argument("--title", default=None)
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--out", required=True, help="output .png")
    m.set_defaults(func=cmd_map)


def cmd_bars(args: argparse.Namespace) -> int:
    from ..evaluate.figures import bars_from_results

    labels = [s.strip() for s in args.labels.split(",")] if args.labels else None
    print(f"wrote {bars_from_results(args.results, args.out, labels, args.title)}")
    return 0


def cmd_map(args: argparse.Namespace) -> int:
    from ..datasets.manifest import read_manifest
    from ..evaluate.figures import embedding_map
    from ..extract import Embeddings

    emb = Embeddings.load(args.embeddings)
    rows = read_manifest(args.manifest, required=("audio_path",))
    if args.label_column not in rows[0]:
        raise ValueError(f"{args.manifest}: no column {args.label_column!r} (has: {', '.join(rows[0])})")
    label_of = {str(Path(r["audio_path"]).resolve()): r[args.label_column] for r in rows}
    keep = [i for i, p in enumerate(emb.paths) if label_of.get(str(Path(p).resolve()), "").strip()]
    if not keep:
        raise ValueError(f"no embedded file of {args.embeddings} has a {args.label_column!r} value in {args.manifest}")
    labels = [label_of[str(Path(emb.paths[i]).resolve())] for i in keep]
    out = embedding_map(emb.embeddings[keep], labels, args.out, args.title, seed=args.seed,
                        label_name=args.label_column)
    print(f"wrote {out} ({len(keep)} of {len(emb.paths)} embeddings have a label)")
    return 0


def cmd_roc(args: argparse.Namespace) -> int:
    import numpy as np

    from ..evaluate.figures import roc_figure

    labels = [s.strip() for s in args.labels.split(",")] if args.labels else \
        [Path(p).parent.name for p in args.scores]
    if len(labels) != len(args.scores):
        raise ValueError(f"{len(labels)} labels for {len(args.scores)} score files")
    curves: dict[str, dict] = {}
    for label, path in zip(labels, args.scores):
        with np.load(path) as z:
            for key in z.files:
                task, part = key.rsplit("/", 1)
                if part == "y":
                    curves.setdefault(task, {})[label] = (z[key], z[f"{task}/score"])
    if not curves:
        raise ValueError(f"no ROC scores in {', '.join(args.scores)}")
    print(f"wrote {roc_figure(curves, args.out, args.title)}")
    return 0
