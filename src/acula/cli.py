"""The `acula` command. Each subcommand is a thin wrapper over a library function."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _add_encoder_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--encoder", default="opera-gt", help="registered encoder name (see `acula encoders`)")
    p.add_argument("--preset", default=None, help="size preset, e.g. base or tiny")
    p.add_argument("--checkpoint", default=None, help="weights: .ckpt/.pt/.safetensors/.tflite or hf://owner/repo/file")
    p.add_argument("--trust-checkpoint", action="store_true",
                   help="allow checkpoints that need full unpickling (can run arbitrary code: only for files you trust)")
    p.add_argument("--allow-missing-decoder", action="store_true",
                   help="accept an encoder-only checkpoint (features work; masked-audio modelling starts fresh)")
    p.add_argument("--hf-model", default=None, metavar="DIR_OR_ID",
                   help="hf-ast / hf-clap: the Hugging Face model, a local directory or a hub id")


def _encoder(args):
    from .encoders import create

    opts = {"preset": args.preset} if args.preset else {}
    if getattr(args, "hf_model", None):
        opts["model"] = args.hf_model
    return create(args.encoder, checkpoint=args.checkpoint, trust_checkpoint=args.trust_checkpoint,
                  allow_missing_decoder=args.allow_missing_decoder, **opts)


def cmd_demo(args) -> int:
    from .demo import DemoConfig, run, table

    cfg = DemoConfig(out=Path(args.out))
    if args.seeds:
        cfg.seeds = tuple(int(s) for s in args.seeds.split(","))
    if args.epochs:
        cfg.train.epochs = args.epochs
    results = run(cfg)
    print(table(results))
    print(f"results: {Path(args.out) / 'results.json'}  figure: {Path(args.out) / 'results.png'}")
    return 0


def cmd_embed(args) -> int:
    from .extract import describe, embed_files, expand_inputs

    encoder = _encoder(args)
    paths = expand_inputs(args.inputs)
    if not paths:
        print("no audio inputs found", file=sys.stderr)
        return 2
    policy = args.policy or encoder.contract.window_policy
    config = describe(encoder, policy, args.checkpoint)  # fails early on a bad configuration
    if args.feature_cache:
        from .data.features import POLICIES, build_feature_cache
        from .extract import embed_cache

        if encoder.contract.frontend != "logmel" or policy not in POLICIES:
            raise ValueError(f"--feature-cache holds log-mel windows of the {' / '.join(POLICIES)} policies; "
                             f"{encoder.name} with policy {policy!r} reads its audio directly (drop the flag)")
        cache = build_feature_cache(paths, args.feature_cache, encoder.contract, policy=policy, workers=args.workers,
                                    strict=args.strict)  # built once, resumable; refused if built otherwise
        result = embed_cache(encoder, cache, batch_size=args.batch_size, strict=args.strict)
    else:
        resume_dir = Path(str(args.out) + ".partial") if args.resume else None
        result = embed_files(encoder, paths, policy=policy, batch_size=args.batch_size, strict=args.strict,
                             resume_dir=resume_dir)
    result.config = config
    result.save(args.out)
    print(f"embedded {len(result.paths)} / {len(paths)} files -> {args.out} "
          f"({encoder.feature_dim}-d); skipped {len(result.skipped_paths)}")
    for p, r in zip(result.skipped_paths, result.skipped_reasons):
        print(f"  skipped {p}: {r}")
    return 0


def cmd_encoders(args) -> int:
    from .encoders import list_encoders

    print("\n".join(list_encoders()))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="acula", description="Teach medical-audio encoders clinical language.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="end-to-end AcuLa on the embedded synthetic corpus")
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--seeds", default=None, help="comma-separated alignment seeds (default 0,1,2)")
    p.add_argument("--epochs", type=int, default=None)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("embed", help="embed audio files, folders or a CSV with audio_path")
    p.add_argument("inputs", nargs="+")
    _add_encoder_args(p)
    p.add_argument("--policy", choices=["acula", "opera", "whole"], default=None,
                   help="windowing policy (default: the encoder's)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--strict", action="store_true", help="stop at the first bad file instead of skipping it")
    p.add_argument("--resume", action="store_true",
                   help="keep finished chunks in OUT.partial/ so a killed run continues where it stopped")
    p.add_argument("--feature-cache", default=None, metavar="DIR",
                   help="read the log-mel windows from this feature cache, building it first if needed (the same "
                        "cache `acula align --feature-cache` uses): decode a corpus once for many encoders or runs")
    p.add_argument("--workers", type=int, default=0, help="processes building the feature cache (0 = in-process)")
    p.add_argument("--out", required=True, help="output .npz")
    p.set_defaults(func=cmd_embed)

    p = sub.add_parser("encoders", help="list registered encoders")
    p.set_defaults(func=cmd_encoders)

    from .align.cli import register_cli as align_cli

    align_cli(sub)
    for mod in ("acula.text.reports", "acula.encoders.checkpoint", "acula.evaluate.bench",
                "acula.evaluate.zeroshot", "acula.evaluate.retrieval", "acula.evaluate.finetune",
                "acula.evaluate.figures", "acula.data.corpus", "acula.evaluate.analyze",
                "acula.experiments"):
        try:
            module = __import__(mod, fromlist=["register_cli"])
        except ModuleNotFoundError:
            continue
        if hasattr(module, "register_cli"):
            module.register_cli(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, KeyError, RuntimeError) as e:  # RuntimeError: e.g. an LLM backend
        print(f"acula {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
