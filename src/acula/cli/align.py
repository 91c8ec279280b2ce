"""`acula align`: align an encoder to a teacher on a manifest (`audio_path`, `Gen_Report`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ._common import add_encoder_args, add_strict_arg, encoder_from_args


def run_align(args: argparse.Namespace) -> int:
    from .._io import write_json
    from ..align.model import AculaModel
    from ..align.trainer import AlignmentData, TrainConfig, Trainer, seed_everything
    from ..datasets.manifest import read_manifest
    from ..text.cache import embed_texts
    from ..text.teacher import Teacher
    from ..tracking import parse_report_to

    out = Path(args.out)
    rows = read_manifest(args.manifest, required=("audio_path", "Gen_Report"))
    exclusions = None
    if args.exclude_subjects:
        excluded = {s.strip() for s in Path(args.exclude_subjects).read_text().split() if s.strip()}
        before = len(rows)
        rows = [r for r in rows if r.get("subject_id", "") not in excluded]
        print(f"leakage guard: excluded {before - len(rows)} recordings of {len(excluded)} listed subjects")
        exclusions = {"file": str(args.exclude_subjects), "subjects": len(excluded), "recordings": before - len(rows)}
    seed_everything(args.seed)  # a randomly initialised encoder (no --checkpoint) is then the same every run
    encoder = encoder_from_args(args)
    inputs, kept, skipped = _encoder_inputs(rows, encoder, args, out)
    if skipped:
        write_json(out / "skipped.json", skipped)
        print(f"skipped {len(skipped)} unreadable recordings (see {out / 'skipped.json'})")
    if len(kept) < 2:
        why = f" (reasons in {out / 'skipped.json'})" if skipped else ""
        raise ValueError(f"{args.manifest}: only {len(kept)} of {len(rows)} recordings are readable{why}; "
                         "alignment needs at least 2")
    teacher = Teacher(args.teacher, layer=args.teacher_layer, pooling=args.pooling)
    text = embed_texts(teacher, [r["Gen_Report"] for r in kept], args.cache_dir or out / "text_cache")
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, grad_accum=args.grad_accum, lr=args.lr,
                      weight_decay=args.weight_decay, warmup_steps=args.warmup_steps, loss=args.loss,
                      lambda_align=args.lambda_align, lambda_mam=args.lambda_mam, seed=args.seed,
                      mixed_precision=args.mixed_precision, grad_checkpointing=args.grad_checkpointing,
                      align_features=args.align_features, unmasked_epochs=args.unmasked_epochs,
                      save_every_steps=args.save_every_steps, tensorboard=args.tensorboard,
                      report_to=parse_report_to(args.report_to))
    within = _align_within(args, rows)
    groups = None
    if within != "none":
        empty = [r["audio_path"] for r in kept if not (r.get(within) or "").strip()]
        if empty:
            raise ValueError(f"{args.manifest}: --align-within {within}: {len(empty)} row(s) have no {within!r} value, "
                             f"e.g. {empty[0]} (fill the column for every row, or pass --align-within none)")
        groups = [r[within] for r in kept]
        print(f"CKA centred within {within}: {len(set(groups))} group(s)")
    cfg.extra["align_within"] = within
    seed_everything(args.seed)  # the projection heads too, whatever loading the teacher drew from the RNG
    model = AculaModel(encoder, text_dim=teacher.hidden_size, audio_input_norm=args.audio_input_norm)
    data = AlignmentData(inputs, text, groups)
    train_idx, held_idx = _heldout_split(kept, args)
    trainer = Trainer(model, data.subset(train_idx) if len(held_idx) else data, cfg, out,
                      heldout=data.subset(held_idx) if len(held_idx) else None,
                      run_config={"teacher": teacher.key, "manifest": str(args.manifest),
                                  "init_checkpoint": _init_record(args.checkpoint),
                                  "alignment_data": _data_record(kept, train_idx, held_idx, exclusions, within)})
    hist = trainer.fit(resume=not args.no_resume)
    if trainer.acc.is_main_process:
        from ..encoders.checkpoint import save_encoder

        save_encoder(model.encoder, out / "encoder.safetensors")
        last = hist[-1] if hist else {}
        print(f"done: {trainer.step} steps; final loss {last.get('loss', float('nan')):.4f} "
              f"(align {last.get('align', float('nan')):.4f}, mam {last.get('mam', float('nan')):.4f}); "
              f"checkpoint {out / 'acula_final.pt'}, encoder {out / 'encoder.safetensors'}")
    return 0


def _heldout_split(kept: list[dict], args):
    """(train, held-out) row indices: --heldout-fraction of the subjects (or recordings, without subject_id) kept
    out of training; their CKA is logged at each epoch's end."""
    import numpy as np

    idx = np.arange(len(kept))
    if not args.heldout_fraction:
        return idx, idx[:0]
    from ..data.splits import train_val_split

    subjects = [r.get("subject_id") or r["audio_path"] for r in kept]
    train, held = train_val_split(len(kept), args.heldout_fraction, args.seed, groups=np.asarray(subjects))
    if len(held) < 4:  # the unbiased CKA needs 4 pairs
        raise ValueError(f"--heldout-fraction {args.heldout_fraction}: {len(held)} held-out recordings; the held-out "
                         "CKA needs at least 4 (raise the fraction)")
    print(f"held out {len(held)} recordings of {len({subjects[i] for i in held})} subjects for the held-out CKA")
    return np.sort(train), np.sort(held)


def _init_record(checkpoint: str | None) -> dict | None:
    """The weights the run started from (--checkpoint, or --pretrained as hf://OWNER/NAME@COMMIT/FILE)."""
    if not checkpoint:
        return None
    from .._io import sha256_file

    path = Path(checkpoint)
    return {"source": str(checkpoint), "sha256": sha256_file(path) if path.is_file() else None}


def _data_record(kept: list[dict], train_idx, held_idx, exclusions: dict | None, within: str) -> dict:
    """What the model card says about the alignment data: sizes, datasets, subjects, exclusions."""
    from collections import Counter

    rows = [kept[i] for i in train_idx]
    subjects = {r["subject_id"] for r in rows if r.get("subject_id")}
    return {"recordings": len(rows), "subjects": len(subjects) if subjects else None,
            "datasets": dict(Counter(r["dataset"] for r in rows)) if rows and "dataset" in rows[0] else None,
            "heldout_recordings": len(held_idx), "exclude_subjects": exclusions, "align_within": within}


def _align_within(args, rows: list[dict]) -> str:
    """The grouping column; by default `dataset` when the manifest has one, else none."""
    if args.align_within is None:
        return "dataset" if "dataset" in rows[0] else "none"
    if args.align_within == "none" or args.align_within in rows[0]:
        return args.align_within
    raise ValueError(f"{args.manifest}: --align-within {args.align_within}: no such column "
                     f"(has: {', '.join(rows[0])})")


def _encoder_inputs(rows: list[dict], encoder, args, out: Path):
    """One input window per recording. Log-mel inputs go through the memory-mapped feature cache
    (computed once, resumable, refused if built with other settings), so memory stays flat with the
    corpus size; waveform encoders (YAMNet, HF towers) keep their windows in memory."""
    import numpy as np

    from ..audio.io import AudioError
    from ..extract import read_clip

    if encoder.contract.frontend == "logmel":
        from ..data.features import build_feature_cache

        cache = build_feature_cache([r["audio_path"] for r in rows], Path(args.feature_cache or out / "features"),
                                    encoder.contract, policy="acula", workers=args.workers, strict=args.strict)
        kept = [rows[i] for i in cache.kept_indices]
        return cache.first_windows(), kept, [{"audio_path": p, "reason": r} for p, r in cache.skipped]
    from tqdm.auto import tqdm

    inputs, kept, skipped = [], [], []
    for r in tqdm(rows, desc="inputs", unit="clip"):
        try:
            inputs.append(read_clip(r["audio_path"], encoder, "acula")[0].numpy())
            kept.append(r)
        except AudioError as e:
            if args.strict:
                raise
            skipped.append({"audio_path": r["audio_path"], "reason": e.reason})
    return (np.stack(inputs) if inputs else np.zeros((0,))), kept, skipped


def _layers(text: str) -> int | tuple[int, ...]:
    """'-1' -> -1; '-4,-3,-2,-1' -> the mean of those hidden states (acula.text.teacher)."""
    parts = [int(v) for v in text.split(",") if v.strip()]
    if not parts:
        raise argparse.ArgumentTypeError(f"expected an index or a comma-separated list, got {text!r}")
    return parts[0] if len(parts) == 1 and "," not in text else tuple(parts)


def register(sub) -> None:
    p = sub.add_parser("align", help="align an audio encoder to report embeddings (MAM + CKA)")
    p.add_argument("--manifest", required=True, help="CSV with audio_path, Gen_Report[, subject_id]")
    add_encoder_args(p)
    p.add_argument("--teacher", default="minilm", help="teacher LM: minilm, a local path or a HF id")
    p.add_argument("--teacher-layer", type=_layers, default=-1, metavar="N[,N...]",
                   help="hidden state(s) to pool: an index (-1 = last) or a comma-separated list, averaged")
    p.add_argument("--pooling", default="mean", choices=["mean", "last", "cls"])
    p.add_argument("--cache-dir", default=None, help="report-embedding cache (default OUT/text_cache)")
    p.add_argument("--feature-cache", default=None, help="log-mel feature cache folder (default OUT/features)")
    p.add_argument("--workers", type=int, default=0, help="processes building the feature cache (0 = in-process)")
    p.add_argument("--exclude-subjects", default=None, help="file of subject ids never to align on (test subjects)")
    p.add_argument("--loss", default="cka", choices=["cka", "cka_biased", "rbf_cka", "cka_feature", "info_nce"])
    p.add_argument("--align-within", default=None, metavar="COLUMN",
                   help="centre the CKA within groups of this manifest column, so differences between datasets "
                        "(heart vs lung vs cough) do not dominate the loss; 'none' = the whole batch, as published "
                        "(default: dataset; a manifest without the column falls back to none)")
    p.add_argument("--audio-input-norm", action=argparse.BooleanOptionalAction, default=True,
                   help="standardise pooled audio features over the batch before the audio projection "
                        "(default); --no-audio-input-norm = the published head")
    p.add_argument("--lambda-align", type=float, default=1.0)
    p.add_argument("--lambda-mam", type=float, default=1.0)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--grad-accum", type=int, default=1)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--warmup-steps", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--mixed-precision", default="no", choices=["no", "auto", "bf16", "fp16"],
                   help="no: fp32; bf16/fp16: autocast (Accelerate); auto: bf16 where the device computes it natively "
                        "(a GPU, or a CPU with AVX512-BF16 or AMX), else fp32")
    p.add_argument("--align-features", default="auto", choices=["auto", "full", "masked"],
                   help="full (published): each step runs the encoder twice, masked for MAM and unmasked for the "
                        "alignment features; masked: once, aligning the pooled visible tokens of the MAM pass (FLIP; "
                        "encoders that drop masked tokens, i.e. OPERA-GT); auto (default): masked where the encoder "
                        "can, else full (docs/align.md compares them)")
    p.add_argument("--unmasked-epochs", type=int, default=0, metavar="N",
                   help="with --align-features masked: run the last N epochs full (FLIP's unmasked tuning)")
    p.add_argument("--grad-checkpointing", action="store_true")
    p.add_argument("--save-every-steps", type=int, default=0)
    p.add_argument("--tensorboard", action="store_true", help="same as --report-to tensorboard")
    p.add_argument("--report-to", default="none", metavar="TRACKERS",
                   help="training trackers, comma-separated: tensorboard (OUT/tensorboard), wandb (optional extra; "
                        "offline unless WANDB_API_KEY or WANDB_MODE is set), all or none (default)")
    p.add_argument("--heldout-fraction", type=float, default=0.0, metavar="F",
                   help="keep this fraction of the subjects out of training and log their audio-report CKA at "
                        "each epoch's end (default 0: none)")
    p.add_argument("--no-resume", action="store_true", help="start over even if OUT has a checkpoint")
    add_strict_arg(p, "stop at the first unreadable recording")
    p.add_argument("--out", required=True)
    p.set_defaults(func=run_align)
