"""`acula bench`: the downstream benchmark (OPERA protocol, docs/protocol.md#probe-protocol) for any registered encoder.

    acula bench --encoder opera-gt --checkpoint gt.ckpt --tasks T1,T7,circor-murmur --data-root /data --out runs/b
    acula bench --encoder opera-gt --preset tiny --task-csv my_task.csv --out runs/mine
    acula bench compare runs/a/results.csv runs/b/results.csv

Per task: load the recordings from the real download layout, embed them once with the task's input policy
(docs/protocol.md#per-task-input-lengths; cached under OUT/features/ keyed by preprocessing, encoder and
checkpoint), then fit the linear probe with seeds 0..N-1 (or once per held-out fold for LOOCV / LOSO tasks)
and score the test split. A task that fails (missing dataset, bad CSV, one-class split) becomes an `error`
row; the others still run. Results are rewritten atomically after every task.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ._common import add_device_arg, add_encoder_args, add_strict_arg, encoder_from_args, resolve_device, seed_list


def register(sub) -> None:
    p = sub.add_parser("bench", help="downstream benchmark: OPERA tasks, cardiac tasks, CSV tasks",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_encoder_args(p)
    add_task_args(p)
    p.add_argument("--out", default=None, help="output folder (results.csv/.md, results_seeds.csv, features/)")
    p.add_argument("--seeds", type=seed_list, default=tuple(range(5)), help="number of probe seeds (0..N-1) or a list")
    p.add_argument("--head", choices=["linear", "mlp"], default="linear")
    p.add_argument("--epochs", type=int, default=None, help="override every task's probe epochs (default: protocol)")
    p.add_argument("--batch-size", type=int, default=32, help="embedding batch size (windows)")
    add_device_arg(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_strict_arg(p, "a task with a missing or unreadable recording fails instead of leaving it out")
    p.add_argument("--list", action="store_true", help="list the registered tasks and exit")
    p.set_defaults(func=cmd_bench)
    bsub = p.add_subparsers(dest="bench_command", metavar="compare")
    c = bsub.add_parser("compare", help="compare two results.csv files (paired tests over tasks and seeds)")
    c.add_argument("a", help="results.csv of run A (baseline)")
    c.add_argument("b", help="results.csv of run B")
    c.set_defaults(func=cmd_compare)


def add_task_args(p: argparse.ArgumentParser) -> None:
    """--tasks, --task-csv, --task-kind, --data-root (acula bench and acula finetune)."""
    p.add_argument("--tasks", default=None, help="comma-separated task ids or names, or 'all' (see acula bench --list)")
    p.add_argument("--task-csv", action="append", default=None,
                   help="custom task CSV (audio_path,label[,split][,subject_id]); repeatable")
    p.add_argument("--task-kind", choices=["classification", "regression", "auto"], default="classification",
                   help="kind of the --task-csv tasks (auto: regression if labels are numbers with non-integers "
                        "or more than 10 values)")
    p.add_argument("--data-root", default=None, help="folder holding the downloaded datasets (docs/bench.md)")


def tasks_from_args(args: argparse.Namespace) -> list:
    """Registered tasks (`--tasks`, need `--data-root`) plus custom `--task-csv` tasks, ids unique."""
    from ..evaluate.tasks import csv_task, resolve_tasks

    if not args.tasks and not args.task_csv:
        raise ValueError("give --tasks T1,T7,... (or 'all'; see `acula bench --list`) and/or --task-csv FILE")
    tasks = resolve_tasks(args.tasks) if args.tasks else []
    if tasks and not args.data_root:
        raise ValueError("--data-root DIR is required for registered tasks")
    if args.data_root and not Path(args.data_root).is_dir():
        raise FileNotFoundError(f"--data-root {args.data_root} is not a folder")
    tasks += [csv_task(p, kind=args.task_kind) for p in args.task_csv or []]
    ids = [t.id for t in tasks]
    clash = sorted({i for i in ids if ids.count(i) > 1})
    if clash:
        raise ValueError(f"task id(s) {', '.join(clash)} given twice (a --task-csv is named after its file)")
    return tasks


def cmd_bench(args: argparse.Namespace) -> int:
    if args.list:
        from ..evaluate.tasks import list_tasks

        for t in list_tasks():
            print(f"{t.id:<14} {t.name:<22} {t.dataset:<24} {t.metric:<6} {t.target}")
        return 0
    if not args.out:
        raise ValueError("--out DIR is required")
    tasks = tasks_from_args(args)
    import torch

    from ..evaluate.bench import run_bench

    torch.manual_seed(0)  # a randomly initialised encoder (no --checkpoint) is the same every run
    encoder = encoder_from_args(args)
    if not args.checkpoint and not args.hf_model:  # an HF tower brings its own weights
        print(f"acula bench: no --checkpoint: {args.encoder} is randomly initialised (seed 0), "
              f"a floor to compare trained encoders against", file=sys.stderr)
    rows = run_bench(encoder, tasks, args.out, args.data_root, seeds=args.seeds, head=args.head, epochs=args.epochs,
                     checkpoint=args.checkpoint, batch_size=args.batch_size, device=resolve_device(args.device),
                     progress=not args.no_progress, strict=args.strict)
    print((Path(args.out) / "results.md").read_text(encoding="utf-8"))
    failed = [r["task"] for r in rows if r["status"] != "ok"]
    if failed:
        print(f"{len(failed)} task(s) failed: {', '.join(failed)} (see the error column)", file=sys.stderr)
    return 1 if failed and len(failed) == len(rows) else 0


def cmd_compare(args: argparse.Namespace) -> int:
    from ..evaluate.results import compare

    text, _ = compare(args.a, args.b)
    print(text)
    return 0
