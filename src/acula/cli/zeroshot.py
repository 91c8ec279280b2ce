"""`acula calibrate`, `acula zeroshot` and `acula retrieve`: the joint audio-text space of an aligned checkpoint
(docs/zeroshot.md)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ._common import add_device_arg, add_trust_checkpoint, resolve_device


def register(sub) -> None:
    p = sub.add_parser("calibrate", help="fit the audio->text map of an aligned checkpoint on its alignment "
                                         "pairs (for zero-shot and retrieval)")
    add_aligned_source_args(p)
    p.add_argument("--manifest", required=True, help="the alignment manifest (audio_path, Gen_Report)")
    p.add_argument("--exclude-subjects", default=None, help="subject ids left out of alignment (as for acula align)")
    p.add_argument("--out", default=None, help="output file (default: <checkpoint>.calibration.safetensors)")
    p.add_argument("--teacher", default=None, help="teacher LM (default: the one stored in the checkpoint)")
    p.add_argument("--cache-dir", default=None, help="report-embedding cache (default: beside the output)")
    p.add_argument("--policy", choices=["acula", "opera", "whole"], default="acula")
    p.add_argument("--batch-size", type=int, default=32)
    add_device_arg(p)
    add_trust_checkpoint(p, "allow full unpickling of the checkpoint (only for files you trust)")
    p.set_defaults(func=cmd_calibrate)

    p = sub.add_parser("zeroshot", help="zero-shot classification from class prompts (aligned checkpoint)")
    add_joint_space_args(p)
    p.add_argument("--label-column", required=True, help="manifest column holding the class of each recording")
    p.add_argument("--prompts", default=None,
                   help='JSON {"classes": {"<label>": ["prompt", ...], ...}} (default: built-in for murmur, '
                        "crackles, wheezes)")
    p.add_argument("--logit-scale", type=float, default=None,
                   help="softmax scale on cosines for class probabilities (multi-class AUROC only)")
    p.set_defaults(func=cmd_zeroshot)

    p = sub.add_parser("retrieve", help="audio <-> report retrieval (aligned checkpoint)")
    add_joint_space_args(p)
    p.add_argument("--text-column", default="Gen_Report", help="manifest column with each recording's report")
    p.set_defaults(func=cmd_retrieve)


def add_joint_space_args(p: argparse.ArgumentParser) -> None:
    """Options shared by `acula zeroshot` and `acula retrieve`."""
    add_aligned_source_args(p)
    p.add_argument("--manifest", required=True, help="CSV of the recordings to evaluate (audio_path, ...)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--similarity", choices=["calibrated", "raw", "both"], default="calibrated",
                   help="calibrated: cosine after the Procrustes map (CKA-trained models); raw: plain cosine "
                        "(InfoNCE-trained models); both: report each")
    p.add_argument("--calibration", default=None, help="calibration file from `acula calibrate`")
    p.add_argument("--align-manifest", default=None,
                   help="alignment pairs (audio_path, Gen_Report) to fit the calibration on now")
    p.add_argument("--teacher", default=None, help="teacher LM (default: the one stored in the checkpoint)")
    p.add_argument("--cache-dir", default=None, help="report-embedding cache (default OUT/text_cache)")
    p.add_argument("--policy", choices=["acula", "opera", "whole"], default="acula",
                   help="audio windowing (default acula: the first 8.19 s, as in alignment)")
    p.add_argument("--batch-size", type=int, default=32)
    add_device_arg(p)
    add_trust_checkpoint(p, "allow full unpickling of the checkpoint (only for files you trust)")


def add_aligned_source_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", default=None, help="AcuLa alignment checkpoint (acula_final.pt)")
    p.add_argument("--pretrained", default=None, metavar="NAME_OR_REPO",
                   help="instead of --checkpoint, published weights with both projection heads, through the Hugging "
                        "Face hub: acula (tsnngw/AcuLa), an `acula publish` repo OWNER/NAME[@REVISION] or its folder")


def aligned_checkpoint(args: argparse.Namespace) -> str:
    """--checkpoint, or --pretrained fetched now and given as a source pinned to its commit (hf://OWNER/NAME@C/F)."""
    if (args.checkpoint is None) == (args.pretrained is None):
        raise ValueError("give the aligned model with --checkpoint FILE or --pretrained NAME_OR_REPO (one of them)")
    if args.checkpoint is not None:
        return args.checkpoint
    from ..encoders.hub import aligned_source

    args.checkpoint = aligned_source(args.pretrained)
    return args.checkpoint


def joint_space_config(args: argparse.Namespace):
    """The options `add_joint_space_args` declared, as the library's one config object."""
    from ..evaluate.joint.similarity import similarity_modes
    from ..evaluate.joint.space import JointSpaceConfig

    return JointSpaceConfig(similarities=similarity_modes(args.similarity), calibration=args.calibration,
                            align_manifest=args.align_manifest, teacher=args.teacher, cache_dir=args.cache_dir,
                            policy=args.policy, batch_size=args.batch_size, device=resolve_device(args.device),
                            trust_checkpoint=args.trust_checkpoint, progress=True)


def cmd_zeroshot(args: argparse.Namespace) -> int:
    from ..evaluate.joint.classify import run_zeroshot

    aligned_checkpoint(args)

    scale = {} if args.logit_scale is None else {"logit_scale": args.logit_scale}
    run_zeroshot(args.checkpoint, args.manifest, args.label_column, args.out, prompts=args.prompts,
                 config=joint_space_config(args), **scale)
    print(f"results: {Path(args.out) / 'zeroshot.json'}, {Path(args.out) / 'zeroshot.csv'}")
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    from ..evaluate.joint.calibration import default_calibration_path, fit_calibration
    from ..evaluate.joint.model import load_aligned, teacher_for

    if args.pretrained and not args.out:
        raise ValueError("--pretrained: pass --out FILE for the calibration (the Hugging Face cache is not the place)")
    device = resolve_device(args.device)
    model, ck = load_aligned(aligned_checkpoint(args), args.trust_checkpoint, device)
    tch = teacher_for(ck, args.teacher, device)
    excluded = None
    if args.exclude_subjects:
        excluded = {s.strip() for s in Path(args.exclude_subjects).read_text().split() if s.strip()}
    out = Path(args.out) if args.out else default_calibration_path(ck.path)
    cache = args.cache_dir or out.parent / "text_cache"
    cal = fit_calibration(model, ck, tch, args.manifest, cache, args.policy, excluded, args.batch_size, device,
                          progress=True)
    cal.save(out)
    print(f"wrote {out}")
    return 0


def cmd_retrieve(args: argparse.Namespace) -> int:
    from ..evaluate.joint.retrieval import run_retrieval

    aligned_checkpoint(args)
    run_retrieval(args.checkpoint, args.manifest, args.out, text_column=args.text_column,
                  config=joint_space_config(args))
    print(f"results: {Path(args.out) / 'retrieval.json'}, {Path(args.out) / 'retrieval.csv'}")
    return 0
