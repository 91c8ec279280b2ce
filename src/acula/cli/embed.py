"""`acula embed INPUT... --encoder NAME --out FILE.npz`: embed audio files, folders or a CSV (docs/embed.md)."""

from __future__ import annotations

import sys
from pathlib import Path

from ._common import add_encoder_args, add_strict_arg, encoder_from_args


def register(sub) -> None:
    p = sub.add_parser("embed", help="embed audio files, folders or a CSV with audio_path")
    p.add_argument("inputs", nargs="+")
    add_encoder_args(p)
    p.add_argument("--policy", choices=["acula", "opera", "whole"], default=None,
                   help="windowing policy (default: the encoder's)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                   help="encoder arithmetic: auto = bf16 autocast where the device computes bf16 natively (CUDA, "
                        "CPUs with AVX512-BF16/AMX; cosine >= 0.999 to fp32), else fp32")
    add_strict_arg(p, "stop at the first bad file instead of skipping it")
    p.add_argument("--resume", action="store_true",
                   help="keep finished chunks in OUT.partial/ so a killed run continues where it stopped")
    p.add_argument("--feature-cache", default=None, metavar="DIR",
                   help="read the log-mel windows from this feature cache, building it first if needed (the same "
                        "cache `acula align --feature-cache` uses): decode a corpus once for many encoders or runs")
    p.add_argument("--workers", type=int, default=0, help="processes building the feature cache (0 = in-process)")
    p.add_argument("--out", required=True, help="output .npz")
    p.set_defaults(func=cmd_embed)


def cmd_embed(args) -> int:
    from ..extract import describe, embed_files, expand_inputs

    encoder = encoder_from_args(args)
    paths = expand_inputs(args.inputs)
    if not paths:
        print("no audio inputs found", file=sys.stderr)
        return 2
    policy = args.policy or encoder.contract.window_policy
    from ..encoders.precision import resolve_precision

    precision = resolve_precision(args.precision)  # the CLI embeds on the CPU
    config = describe(encoder, policy, args.checkpoint)  # fails early on a bad configuration
    if precision != "fp32":
        config["precision"] = precision
    if args.feature_cache:
        from ..data.features import POLICIES, build_feature_cache
        from ..extract import embed_cache

        if encoder.contract.frontend != "logmel" or policy not in POLICIES:
            raise ValueError(f"--feature-cache holds log-mel windows of the {' / '.join(POLICIES)} policies; "
                             f"{encoder.name} with policy {policy!r} reads its audio directly (drop the flag)")
        cache = build_feature_cache(paths, args.feature_cache, encoder.contract, policy=policy, workers=args.workers,
                                    strict=args.strict)  # built once, resumable; refused if built otherwise
        result = embed_cache(encoder, cache, batch_size=args.batch_size, strict=args.strict, precision=precision)
    else:
        resume_dir = Path(str(args.out) + ".partial") if args.resume else None
        result = embed_files(encoder, paths, policy=policy, batch_size=args.batch_size, strict=args.strict,
                             resume_dir=resume_dir, precision=precision)
    result.config = config
    result.save(args.out)
    print(f"embedded {len(result.paths)} / {len(paths)} files -> {args.out} "
          f"({encoder.feature_dim}-d); skipped {len(result.skipped_paths)}")
    for p, r in zip(result.skipped_paths, result.skipped_reasons):
        print(f"  skipped {p}: {r}")
    return 0
