"""`acula analyze cka --manifest M --encoder NAME [--checkpoint A [--checkpoint-after B]] --out DIR`
(docs/analyze.md)."""

from __future__ import annotations

from ._common import add_device_arg, add_pretrained_arg, add_trust_checkpoint, resolve_device


def register(sub) -> None:
    p = sub.add_parser("analyze", help="representation analyses")
    asub = p.add_subparsers(dest="analyze_command", required=True)
    c = asub.add_parser("cka", help="linear CKA of every encoder layer vs every teacher layer (heatmaps)")
    c.add_argument("--manifest", required=True, help="CSV with audio_path and Gen_Report")
    c.add_argument("--encoder", default="opera-gt")
    c.add_argument("--preset", default=None)
    c.add_argument("--checkpoint", default=None, help="encoder weights (before alignment; default: as created)")
    c.add_argument("--checkpoint-after", default=None, help="encoder weights after alignment: a second heatmap")
    add_pretrained_arg(c)
    add_trust_checkpoint(c, "allow pickled checkpoints (trusted files only)")
    c.add_argument("--teacher", default="minilm", help="teacher LM: minilm, a folder, a hub id or a .gguf file")
    c.add_argument("--pooling", default="mean", choices=("mean", "last", "cls"))
    c.add_argument("--policy", default=None, choices=("acula", "opera", "whole"),
                   help="windowing policy (default: the encoder's)")
    c.add_argument("--max-recordings", type=int, default=256, help="random subset size (0 = all)")
    c.add_argument("--seed", type=int, default=0, help="seed of the subset")
    c.add_argument("--batch-size", type=int, default=16)
    add_device_arg(c, default="cpu")
    c.add_argument("--out", required=True, help="output folder")
    c.set_defaults(func=cmd_cka)


def cmd_cka(args) -> int:
    from ..evaluate.analyze import run_cka

    if args.pretrained:  # published weights as the (first) checkpoint, pinned to the commit fetched now
        if args.checkpoint:
            raise ValueError("give --pretrained or --checkpoint, not both")
        from ..encoders.hub import checkpoint_source

        args.checkpoint = checkpoint_source(args.encoder, args.pretrained)
    args.device = resolve_device(args.device)
    s = run_cka(args)
    for label, b in s["best"].items():
        print(f"{label}: highest CKA {b['cka']:.3f} at {b['encoder_layer']} x {b['teacher_layer']}")
    print(f"{s['recordings']} recordings; {', '.join(s['csv'].values())}, {s['png']}")
    return 0
