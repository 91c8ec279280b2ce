"""`acula finetune`: adapt an encoder end to end to a downstream task (OPERA's fine-tuning recipe).

    acula finetune --encoder opera-gt --checkpoint gt.ckpt --tasks T7,circor-murmur --data-root /data --out runs/ft
    acula finetune --encoder opera-gt --preset tiny --task-csv my_task.csv --out runs/ft-mine

Encoder + linear head, trained on the task's train split and selected on its validation split. Defaults follow
OPERA's `finetuning.py` (docs/protocol.md#script-bugs): Adam with lr 1e-4 for the head, x0.99 per epoch, early
stopping on the validation metric (AUROC, or MAE for regression) with patience 10, testing the best-validation
weights, seeds 0-4. The encoder learns at 0.1 x the head's rate (`--encoder-lr-scale`): the pretrained
features then move slowly while the fresh head catches up. Inputs are the task's benchmark inputs
(docs/protocol.md#input-policies: GT windows averaged per clip, CE/CT whole recordings), computed once per
task, so epochs never re-decode audio. Results use `acula bench`'s files (results.csv, results_seeds.csv,
results.md), so `acula bench compare probe/results.csv finetune/results.csv` sets frozen-probe and fine-tuned
numbers side by side.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ._common import add_device_arg, add_encoder_args, encoder_from_args, resolve_device, seed_list
from .bench import add_task_args, tasks_from_args

# the optimisation flags; each left unset (None) takes acula.evaluate.finetune.FinetuneConfig's default
CONFIG_FLAGS = ("epochs", "patience", "lr", "encoder_lr_scale", "decay", "weight_decay", "head")


def register(sub) -> None:
    p = sub.add_parser("finetune", help="fine-tune an encoder end to end on benchmark or CSV tasks",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_encoder_args(p)
    add_task_args(p)
    p.add_argument("--out", required=True, help="output folder (results.csv/.md, results_seeds.csv, finetune_log.csv)")
    p.add_argument("--seeds", type=seed_list, default=tuple(range(5)), help="number of seeds (0..N-1) or a list")
    p.add_argument("--epochs", type=int, default=None, help="maximum epochs")
    p.add_argument("--patience", type=int, default=None, help="early-stopping patience (epochs)")
    p.add_argument("--batch-size", type=int, default=None, help="clips per step (default: the task's)")
    p.add_argument("--lr", type=float, default=None, help="head learning rate (Adam)")
    p.add_argument("--encoder-lr-scale", type=float, default=None,
                   help="encoder learning rate = lr x this (0 keeps the encoder fixed)")
    p.add_argument("--decay", type=float, default=None, help="learning-rate factor per epoch")
    p.add_argument("--weight-decay", type=float, default=None)
    p.add_argument("--head", choices=["linear", "mlp"], default=None, help="head on the encoder (default: linear)")
    p.add_argument("--report-to", default="none", metavar="TRACKERS",
                   help="training trackers, comma-separated: tensorboard (OUT/tensorboard), wandb (optional extra; "
                        "offline unless WANDB_API_KEY or WANDB_MODE is set), all or none (default)")
    add_device_arg(p)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_finetune)


def cmd_finetune(args: argparse.Namespace) -> int:
    import torch

    from ..evaluate.finetune import run_finetune
    from ..tracking import parse_report_to

    report_to = parse_report_to(args.report_to)
    tasks = tasks_from_args(args)
    torch.manual_seed(0)  # a randomly initialised encoder (no --checkpoint) is the same every run
    encoder = encoder_from_args(args)
    rows = run_finetune(encoder, tasks, args.out, args.data_root, seeds=args.seeds, cfg=config_from_args(args),
                        checkpoint=args.checkpoint, device=resolve_device(args.device), progress=not args.no_progress,
                        report_to=report_to)
    print((Path(args.out) / "results.md").read_text(encoding="utf-8"))
    failed = [r["task"] for r in rows if r["status"] != "ok"]
    if failed:
        print(f"{len(failed)} task(s) failed: {', '.join(failed)} (see the error column)", file=sys.stderr)
    return 1 if failed and len(failed) == len(rows) else 0


def config_from_args(args: argparse.Namespace):
    """The FinetuneConfig the flags give: FinetuneConfig's own default for each flag left unset."""
    from ..evaluate.finetune import FinetuneConfig

    given = {k: getattr(args, k) for k in CONFIG_FLAGS if getattr(args, k) is not None}
    return FinetuneConfig(batch_size=args.batch_size, **given)
