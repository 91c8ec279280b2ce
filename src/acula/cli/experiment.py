"""`acula experiment align` (any configuration of report-bearing corpora) and `acula experiment real-heart`
(its Yaseen configuration, under the name earlier versions used)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ._common import add_trust_checkpoint


def int_list(text: str) -> tuple[int, ...]:
    """'0,1,2' -> (0, 1, 2): the seeds themselves (each arm's results are keyed by them)."""
    try:
        return tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None

CONFIG_NAMES = ("real-data", "sprsound", "circor", "yaseen")  # acula.experiments.alignment.CONFIGS


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="output folder (results.json, results.png, table.md, encoders/)")
    p.add_argument("--encoder", default="yamnet", help="registered encoder (yamnet, opera-gt, ...)")
    p.add_argument("--checkpoint", default=None,
                   help="initial weights (YAMNet: its .tflite); none = random init, pre-trained with MAM first")
    add_trust_checkpoint(p)
    p.add_argument("--preset", default=None, help="size preset, e.g. tiny")
    p.add_argument("--seeds", type=int_list, default=(0, 1, 2), help="alignment seeds, e.g. 0,1,2")
    p.add_argument("--probe-seeds", type=int_list, default=(0, 1, 2, 3, 4), help="probe head seeds per arm and seed")
    p.add_argument("--epochs", type=int, default=None, help="alignment epochs of every arm (default per encoder)")
    p.add_argument("--mam-epochs", type=int, default=None, help="MAM pre-training epochs of a random init")
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--window-seconds", type=float, default=None, help="each recording -> its first window this long")
    p.add_argument("--crop-seconds", type=float, default=None, help="alignment crop per clip and step (0 = none)")
    p.add_argument("--freeze-layers", type=int, default=None, help="leading YAMNet layers frozen in every arm")
    p.add_argument("--max-per-subject", type=int, default=None, help="recordings kept per subject (CPU budget)")
    p.add_argument("--heldout-fraction", type=float, default=None, help="subjects held out per corpus (0.3)")
    p.add_argument("--split-seed", type=int, default=None)
    p.add_argument("--teacher", default=None, help="minilm (default), a local folder or a Hugging Face id")
    p.add_argument("--report-profile", default=None, choices=("clinical", "full"))
    p.add_argument("--report-phrasing", default=None, choices=("varied", "fixed"),
                   help="varied (default): equivalent wordings per record; fixed: one wording per finding")
    p.add_argument("--probe-lr", type=float, default=None)
    p.add_argument("--probe-epochs", type=int, default=None)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default 2)")
    p.add_argument("--arms", type=lambda t: tuple(a for a in t.split(",") if a), default=None,
                   help="trained arms in order, comma-separated: baseline, aligned, aligned_masked, "
                        "aligned_masked_tuned, published, label_cka (default per encoder)")
    p.add_argument("--unmasked-epochs", type=int, default=None,
                   help="final full-feature epochs of aligned_masked_tuned (default 1)")
    p.add_argument("--device", default=None, help="auto (default: cuda when present), cpu, cuda, cuda:1")
    p.add_argument("--mixed-precision", default=None, choices=("no", "auto", "bf16"),
                   help="training precision: no (fp32, default), bf16, or auto (bf16 where native)")
    p.add_argument("--probe-workers", type=int, default=None,
                   help="processes that run the probes beside the training (default 0: in-process)")
    p.add_argument("--prepared", default=None, metavar="DIR",
                   help="inputs, labels and teacher embeddings: read from DIR when it holds them, else computed and "
                        "written there (default OUT/prepared); a prepared folder trains without data or teacher")
    p.add_argument("--prepare-only", action="store_true", help="write the prepared folder and stop")
    p.add_argument("--prepared-dtype", default="float32", choices=("float32", "float16"),
                   help="inputs in the prepared folder (float16 halves it for copying to another machine)")


def register(sub, argv: list[str] | None = None) -> None:
    p = sub.add_parser("experiment", help="AcuLa end to end on real corpora: arms, held-out probes, zero-shot")
    ex = p.add_subparsers(dest="experiment", required=True)
    a = ex.add_parser("align", help="align on a configuration of corpora and judge on held-out subjects",
                      description="Arms: initial, MAM only, MAM + CKA to acula's reports, MAM + CKA to published "
                                  "reports (where given), MAM + CKA to one-hot labels. See docs/real-data.md.")
    a.add_argument("--config", default="real-data", choices=CONFIG_NAMES)
    a.add_argument("--data-root", required=True, help="folder holding the corpora (e.g. sprsound/, circor/)")
    a.add_argument("--published-reports", nargs="*", default=[], metavar="CORPUS=CSV",
                   help="published reports to align to in an extra arm, e.g. circor=training_data_report.csv")
    _common(a)
    a.set_defaults(func=cmd_align)
    r = ex.add_parser("real-heart", help="the Yaseen configuration: `align --config yaseen --data-root DATA`")
    r.add_argument("--data", required=True, help="folder with labels.csv (path,label) and the audio files")
    _common(r)
    r.set_defaults(func=cmd_real_heart)


def _config(args: argparse.Namespace, name: str, data_root: str, published: dict):
    from ..experiments.alignment import make_config

    crop = None if args.crop_seconds is None else (args.crop_seconds or 0.0)
    cfg = make_config(name, data_root, args.out, args.encoder, checkpoint=args.checkpoint, preset=args.preset,
                      seeds=tuple(args.seeds), probe_seeds=tuple(args.probe_seeds), epochs=args.epochs,
                      mam_epochs=args.mam_epochs, lr=args.lr, batch_size=args.batch_size,
                      window_seconds=args.window_seconds, crop_seconds=crop, freeze_layers=args.freeze_layers,
                      max_per_subject=args.max_per_subject, heldout_fraction=args.heldout_fraction,
                      split_seed=args.split_seed, teacher=args.teacher, report_profile=args.report_profile,
                      report_phrasing=args.report_phrasing,
                      probe_lr=args.probe_lr, probe_epochs=args.probe_epochs, threads=args.threads,
                      published_reports=published, trust_checkpoint=args.trust_checkpoint or None,
                      arms=args.arms, unmasked_epochs=args.unmasked_epochs, device=args.device,
                      mixed_precision=args.mixed_precision, probe_workers=args.probe_workers,
                      prepared=args.prepared)
    if cfg.crop_seconds == 0.0:
        cfg.crop_seconds = None
    return cfg


def _run(cfg, args: argparse.Namespace) -> int:
    from ..experiments.alignment import prepare_only, run, table

    if args.prepare_only:
        folder = prepare_only(cfg, args.prepared_dtype)
        print(f"prepared: {folder}")
        return 0
    results = run(cfg)
    print(table(results))
    print(f"results: {Path(cfg.out) / 'results.json'}  figure: {Path(cfg.out) / 'results.png'}  "
          f"encoders: {Path(cfg.out) / 'encoders'}/")
    return 0


def cmd_align(args: argparse.Namespace) -> int:
    published = {}
    for item in args.published_reports:
        corpus, sep, path = item.partition("=")
        if not sep or not path:
            raise ValueError(f"--published-reports {item!r}: expected CORPUS=CSV, e.g. circor=training_data_report.csv")
        published[corpus] = path
    return _run(_config(args, args.config, args.data_root, published), args)


def cmd_real_heart(args: argparse.Namespace) -> int:
    return _run(_config(args, "yaseen", args.data, {}), args)
