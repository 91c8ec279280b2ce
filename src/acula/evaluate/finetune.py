"""End-to-end fine-tuning of an encoder on downstream tasks (OPERA's recipe); the command and its defaults are
described in `acula.cli.finetune` (`acula finetune --help`) and docs/finetune.md."""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .._io import write_json, write_text
from ..audio.io import AudioError
from ..data.splits import train_val_split
from ..encoders.base import AudioEncoder
from ..extract import read_clip
from ..features import feature_forward, pool_clips
from .probe import make_head
from .results import csv_text, error_row, task_rows, write_results
from .tasks import Task, TaskData, TaskError
from .zeroshot import auroc_over_present_classes

LOG_COLUMNS = ["task", "seed", "fold", "epoch", "train_loss", "val_metric", "best", "lr_head", "lr_encoder"]


@dataclass
class FinetuneConfig:
    epochs: int = 64  # at most; early stopping usually ends sooner
    patience: int = 10  # epochs without a better validation metric before stopping
    batch_size: int | None = None  # clips per step; None = the task's probe batch size
    lr: float = 1e-4  # head
    encoder_lr_scale: float = 0.1  # encoder lr = lr * this
    decay: float = 0.99  # lr x decay after every epoch
    weight_decay: float = 0.0
    clip: float = 1.0  # gradient-norm clipping
    head: str = "linear"

    def __post_init__(self):
        for name in ("epochs", "patience"):
            if getattr(self, name) < 1:
                raise ValueError(f"fine-tuning {name} must be >= 1, got {getattr(self, name)}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"fine-tuning batch_size must be >= 1, got {self.batch_size}")
        if self.lr <= 0 or self.encoder_lr_scale < 0 or not 0 < self.decay <= 1:
            raise ValueError(f"need lr > 0, encoder_lr_scale >= 0 and 0 < decay <= 1, got {self.lr}, "
                             f"{self.encoder_lr_scale}, {self.decay}")


# --------------------------------------------------------------------------------------------------------
# inputs, computed once per task


def task_inputs(encoder: AudioEncoder, task: Task, data: TaskData, progress: bool = False
                ) -> tuple[list[torch.Tensor], np.ndarray, list[str]]:
    """Inputs of every readable recording (exactly as `acula bench` embeds them for this task), their row indices
    in `data`, and a note on the unreadable."""
    policy = task.input_policy(encoder.name)
    inputs, kept, skipped = [], [], []
    for i, p in enumerate(tqdm(data.paths, desc=f"{task.id} inputs", unit="clip", disable=not progress)):
        try:
            inputs.append(read_clip(p, encoder, policy))
            kept.append(i)
        except AudioError as e:
            skipped.append((p, e.reason))
    notes = [f"{len(skipped)} recordings could not be read and are left out (e.g. {skipped[0][0]}: "
             f"{skipped[0][1]})"] if skipped else []
    return inputs, np.array(kept, dtype=int), notes


def clip_features(encoder: AudioEncoder, clips: list[torch.Tensor], device: str | torch.device) -> torch.Tensor:
    """(B, D): each clip's windows through the encoder, averaged (OPERA-GT's clip feature), with gradients.

    All windows of one shape go in one forward pass, so batch-norm statistics see the whole step's batch.
    """
    return pool_clips(feature_forward(encoder, device, to_cpu=False), clips, batch_size=None)


# --------------------------------------------------------------------------------------------------------
# one training run


class EarlyStopping:
    """Best-so-far tracking on a validation metric; `stop` after `patience` epochs without improvement."""

    def __init__(self, patience: int, higher_is_better: bool):
        self.patience, self.higher = patience, higher_is_better
        self.best: float | None = None
        self.bad_epochs = 0

    def update(self, value: float) -> bool:
        """True when `value` is a new best."""
        better = self.best is None or (value > self.best if self.higher else value < self.best)
        if better:
            self.best, self.bad_epochs = value, 0
        else:
            self.bad_epochs += 1
        return better

    @property
    def stop(self) -> bool:
        return self.bad_epochs >= self.patience


class _Model(nn.Module):
    def __init__(self, encoder: AudioEncoder, head: nn.Module, mean: float = 0.0, std: float = 1.0):
        super().__init__()
        self.encoder, self.head = encoder, head
        self.mean, self.std = mean, std  # regression: predict head(x) * std + mean (as LinearProbe)

    def forward(self, clips: list[torch.Tensor], device) -> torch.Tensor:
        return self.head(clip_features(self.encoder, clips, device)) * self.std + self.mean


@torch.no_grad()
def _predict(model: _Model, inputs: list[torch.Tensor], idx: np.ndarray, batch_size: int, device) -> np.ndarray:
    model.eval()
    return torch.cat([model([inputs[i] for i in idx[s:s + batch_size]], device).float().cpu()
                      for s in range(0, len(idx), batch_size)]).numpy()


def score(model: _Model, inputs, y, idx, kind: str, batch_size: int, device) -> float:
    out = _predict(model, inputs, idx, batch_size, device)
    if kind == "regression":
        return float(np.abs(out[:, 0] - y[idx]).mean())
    proba = torch.softmax(torch.from_numpy(out), dim=1).numpy()
    return auroc_over_present_classes(y[idx], proba)


def finetune_split(encoder: AudioEncoder, inputs: list[torch.Tensor], y: np.ndarray, tr: np.ndarray, va: np.ndarray,
                   te: np.ndarray, kind: str, n_classes: int, cfg: FinetuneConfig, seed: int, batch_size: int,
                   device: str | torch.device = "cpu", log_rows: list[dict] | None = None, tag: dict | None = None,
                   on_epoch: Callable[[dict], None] | None = None) -> dict:
    """Fine-tune a copy of `encoder` on `tr`, select on `va`, score `te`.

    Returns {test, best_val, epochs, model}; `model.encoder` / `model.head` hold the best-validation weights.
    """
    reg = kind == "regression"
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    enc = copy.deepcopy(encoder).to(device)
    head = make_head(enc.feature_dim, 1 if reg else n_classes, cfg.head)
    mean, std = 0.0, 1.0
    if reg:  # the training targets' statistics, as LinearProbe
        mean, std = float(y[tr].mean()), float(max(y[tr].std(ddof=1) if len(tr) > 1 else 1.0, 1e-8))
    model = _Model(enc, head, mean, std).to(device)
    opt = torch.optim.Adam([{"params": [p for p in enc.parameters() if p.requires_grad],
                             "lr": cfg.lr * cfg.encoder_lr_scale},
                            {"params": list(head.parameters()), "lr": cfg.lr}], weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=cfg.decay)
    target = torch.as_tensor(y, dtype=torch.float32 if reg else torch.long)
    stopper = EarlyStopping(cfg.patience, higher_is_better=not reg)
    best_state, epoch = None, 0
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        losses = []
        t0 = time.time()
        for b in torch.randperm(len(tr), generator=gen).split(batch_size):
            idx = tr[b.numpy()]
            out = model([inputs[i] for i in idx], device)
            t = target[idx].to(device)
            loss = nn.functional.mse_loss(out[:, 0], t) if reg else nn.functional.cross_entropy(out, t)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"non-finite fine-tuning loss ({tag or {}}, seed {seed}, epoch {epoch}); "
                                         "try a smaller --lr")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.clip:
                nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
            opt.step()
            losses.append(float(loss.detach()))
        lrs = [g["lr"] for g in opt.param_groups]
        clips_per_s = len(tr) / max(time.time() - t0, 1e-9)
        sched.step()
        val = score(model, inputs, y, va, kind, batch_size, device)
        if stopper.update(val):
            best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        if log_rows is not None:
            log_rows.append({**(tag or {}), "epoch": epoch, "train_loss": f"{np.mean(losses):.6f}",
                             "val_metric": f"{val:.6f}", "best": f"{stopper.best:.6f}",
                             "lr_head": f"{lrs[1]:.3e}", "lr_encoder": f"{lrs[0]:.3e}"})
        if on_epoch is not None:  # trackers (acula.tracking)
            on_epoch({**(tag or {}), "epoch": epoch, "train_loss": float(np.mean(losses)), "val_metric": val,
                      "best": stopper.best, "lr_head": lrs[1], "lr_encoder": lrs[0], "clips_per_s": clips_per_s})
        if stopper.stop:
            break
    model.load_state_dict(best_state)
    return {"test": score(model, inputs, y, te, kind, batch_size, device), "best_val": float(stopper.best),
            "epochs": epoch, "model": model}


# --------------------------------------------------------------------------------------------------------
# tasks


def finetune_task(task: Task, encoder: AudioEncoder, data_root: str | Path | None, seeds: tuple[int, ...],
                  cfg: FinetuneConfig, device: str = "cpu", progress: bool = False,
                  log: Callable[[str], None] = print, on_epoch: Callable[[dict], None] | None = None
                  ) -> tuple[dict, list[dict], list[str], list[dict]]:
    """One task -> (results row, per-seed rows, notes, per-epoch log rows), in `acula bench`'s row format."""
    if data_root is None and task.modality != "custom":
        raise TaskError(f"{task.id}: --data-root is required for registered tasks")
    data = task.load(data_root or ".")
    notes = list(data.notes)
    log(f"{task.id} {task.name}: {data.describe()}")
    inputs, kept, skip_notes = task_inputs(encoder, task, data, progress)
    if len(kept) < len(data):
        data = data.subset(kept)
        data.validate(task.id, task.kind)
    notes += skip_notes
    y = data.labels.astype(float) if task.kind == "regression" else data.labels.astype(int)
    n_classes = len(data.classes) if data.classes else int(y.max()) + 1
    batch = cfg.batch_size or task.batch_size
    log_rows: list[dict] = []
    values, fold_std, sizes = [], [], []
    for s in seeds:
        if data.split is not None:
            tr, va, te = data.part("train"), data.part("val"), data.part("test")
            r = finetune_split(encoder, inputs, y, tr, va, te, task.kind, n_classes, cfg, s, batch, device,
                               log_rows, {"task": task.id, "seed": s, "fold": ""}, on_epoch)
            values.append(r["test"])
            sizes.append((len(tr), len(va), len(te)))
            log(f"  seed {s}: {task.metric} {r['test']:.4f} (best validation {r['best_val']:.4f} after "
                f"{r['epochs']} epochs)")
        else:
            per_fold = []
            for k, held in enumerate(data.folds):
                rest = np.setdiff1d(np.arange(len(data)), held)
                a, b = train_val_split(len(rest), task.fold_val_fraction, task.fold_val_seed,
                                       groups=data.subjects[rest])
                r = finetune_split(encoder, inputs, y, rest[a], rest[b], held, task.kind, n_classes, cfg, s, batch,
                                   device, log_rows, {"task": task.id, "seed": s, "fold": k}, on_epoch)
                per_fold.append(r["test"])
                sizes.append((len(a), len(b), len(held)))
            values.append(float(np.mean(per_fold)))
            fold_std.append(float(np.std(per_fold)))
            log(f"  seed {s}: {task.metric} {values[-1]:.4f} (mean over {len(per_fold)} held-out folds)")
    n_train, n_val = (int(round(np.mean([z[i] for z in sizes]))) for i in (0, 1))
    n_test = sizes[0][2] if data.split is not None else int(sum(len(f) for f in data.folds))
    row, seed_rows = task_rows(task, seeds, values, fold_std, n_train, n_val, n_test)
    log(f"  {task.metric} = {np.mean(values):.4f} ± {np.std(values):.4f} over {len(seeds)} seed(s)")
    return row, seed_rows, notes, log_rows


def run_finetune(encoder: AudioEncoder, tasks: list[Task], out: str | Path, data_root: str | Path | None = None,
                 seeds: tuple[int, ...] = (0, 1, 2, 3, 4), cfg: FinetuneConfig | None = None,
                 checkpoint: str | None = None, device: str = "cpu", progress: bool = False,
                 log: Callable[[str], None] = print, report_to: tuple[str, ...] = ()) -> list[dict]:
    """Fine-tune on each task; write results.csv, results_seeds.csv, results.md, finetune_log.csv, run.json.

    `report_to` ("tensorboard", "wandb"): each epoch's loss, validation metric, learning rates and throughput go
    to those trackers too, one series per task, seed and fold (acula.tracking)."""
    cfg = cfg or FinetuneConfig()
    out = Path(out)
    rows, seed_rows, log_rows, notes = [], [], [], {}
    options = ", ".join(f"{k}={v}" for k, v in encoder.config.items() if k != "name") or "defaults"
    title = f"acula finetune: {encoder.name} ({options}; checkpoint {checkpoint or 'none'})"
    config = {"encoder": dict(encoder.config), "checkpoint": checkpoint, "seeds": list(seeds), "finetune": asdict(cfg),
              "data_root": str(data_root) if data_root else None, "tasks": [t.id for t in tasks]}
    from ..tracking import Tracking

    tracking = Tracking(report_to, out, project="acula-finetune", run_name=out.name, config=config)

    def on_epoch(r: dict) -> None:
        series = "/".join(str(x) for x in (r["task"], f"seed{r['seed']}", f"fold{r['fold']}" if r["fold"] != "" else "")
                          if x)
        tracking.log({f"{series}/{k}": r[k] for k in ("train_loss", "val_metric", "best", "lr_head", "lr_encoder",
                                                      "clips_per_s")}, step=r["epoch"])

    for task in tasks:
        try:
            row, srows, tnotes, lrows = finetune_task(task, encoder, data_root, seeds, cfg, device, progress, log,
                                                      on_epoch if tracking else None)
        except (TaskError, AudioError, ValueError, FileNotFoundError) as e:  # one failed task must not stop the others
            msg = str(e) if isinstance(e, (TaskError, AudioError)) else f"{type(e).__name__}: {e}"
            log(f"{task.id} {task.name}: ERROR {msg}")
            row, srows, tnotes, lrows = error_row(task, msg), [], [], []
        rows.append(row)
        seed_rows += srows
        log_rows += lrows
        notes[task.id] = tnotes
        write_results(out, rows, seed_rows, notes, title)
        write_text(out / "finetune_log.csv", csv_text(log_rows, LOG_COLUMNS))
        write_json(out / "run.json", {**config, "notes": notes, "protocols": {t.id: t.protocol for t in tasks}})
    tracking.finish()
    return rows

