"""`acula demo`: end-to-end AcuLa on the embedded synthetic corpus (docs/demo.md)."""

from __future__ import annotations

from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("demo", help="end-to-end AcuLa on the embedded synthetic corpus")
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--seeds", default=None, help="comma-separated alignment seeds (default 0,1,2)")
    p.add_argument("--epochs", type=int, default=None)
    p.set_defaults(func=cmd_demo)


def cmd_demo(args) -> int:
    from ..demo import DemoConfig, run, table

    cfg = DemoConfig(out=Path(args.out))
    if args.seeds:
        cfg.seeds = tuple(int(s) for s in args.seeds.split(","))
    if args.epochs:
        cfg.train.epochs = args.epochs
    results = run(cfg)
    print(table(results))
    print(f"results: {Path(args.out) / 'results.json'}  figure: {Path(args.out) / 'results.png'}")
    return 0
