"""`acula convert SOURCE --encoder NAME [--preset P] --out FILE.safetensors [--trust-checkpoint]` (docs/convert.md)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ._common import add_trust_checkpoint


def register(sub) -> None:
    p = sub.add_parser("convert", help="check a checkpoint strictly against an encoder and save it as safetensors")
    p.add_argument("source", help="OPERA .ckpt, AcuLa .pt, state dict, .safetensors or hf://owner/repo/file")
    p.add_argument("--encoder", required=True, help="registered encoder name, e.g. opera-gt")
    p.add_argument("--preset", default=None, help="size preset, e.g. base or tiny")
    p.add_argument("--out", required=True, help="output .safetensors (a .json config is written beside it)")
    add_trust_checkpoint(p, "allow full unpickling (can run arbitrary code: only for files you trust)")
    p.add_argument("--allow-missing-decoder", action="store_true",
                   help="accept a checkpoint without the MAM decoder (it is then left out of the output)")
    p.set_defaults(func=cmd_convert)


def cmd_convert(args: argparse.Namespace) -> int:
    from ..encoders.checkpoint import convert

    options = {"preset": args.preset} if args.preset else {}
    report = convert(args.source, args.out, args.encoder, trust_checkpoint=args.trust_checkpoint,
                     allow_missing_decoder=args.allow_missing_decoder, **options)
    print(report)
    print(f"wrote {args.out} and {Path(args.out).with_suffix('.json')}")
    return 0
