"""The alignment training loop: AdamW, warm-up + linear decay, accumulation, clipping, exact resume.

Runs as one process or under `accelerate launch` / `torchrun`. Each optimiser step draws one
*global* batch from a per-epoch permutation fixed by the seed; process r takes its slice. The
alignment loss is computed on projections gathered from every process (with gradients flowing
back to each local shard), so N processes x batch b give the loss and gradients of one process
with batch N*b. Everything that decides the next step (weights, optimiser, scheduler, RNG, epoch
and batch position) is in the checkpoint, so a killed run resumes to the same result.
"""

from __future__ import annotations

import contextlib
import csv
import random
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from .._io import atomic_path
from .losses import alignment_loss
from .model import AculaModel


@dataclass
class TrainConfig:
    epochs: int = 10
    batch_size: int = 32  # global batch per optimiser micro-step (split across processes)
    grad_accum: int = 1
    lr: float = 1e-4
    weight_decay: float = 0.01
    warmup_steps: int = 0
    lambda_align: float = 1.0
    lambda_mam: float = 1.0
    loss: str = "cka"
    group_batches: bool = True  # with groups: every batch from one group (see Trainer._permutation)
    clip_norm: float = 1.0
    seed: int = 0
    mixed_precision: str = "no"  # "no" | "bf16" | "fp16" (GPU) | "auto": bf16 where native (training_precision)
    # "full": published, a masked (MAM) and an unmasked (alignment) encoder pass per step; "masked": one pass,
    # aligning the visible tokens (FLIP), then the last `unmasked_epochs` epochs "full"; "auto": "masked" where
    # the encoder drops masked tokens (OPERA-GT), else "full" (docs/align.md: equal quality on the real data)
    align_features: str = "auto"
    unmasked_epochs: int = 0
    grad_checkpointing: bool = False
    save_every_steps: int = 0  # 0 = only at epoch ends
    tensorboard: bool = False  # = report_to including "tensorboard"
    report_to: tuple[str, ...] = ()  # trackers (acula.tracking): "tensorboard", "wandb"
    extra: dict[str, Any] = field(default_factory=dict)


def training_precision(mixed_precision: str, device: str | torch.device) -> str:
    """Accelerate's precision for `mixed_precision`; "auto" is bf16 autocast where `device` computes bf16 natively
    (a GPU, or a CPU with AVX512-BF16 / AMX: encoders.precision.bf16_native), else "no" (fp32)."""
    if mixed_precision != "auto":
        return mixed_precision
    from ..encoders.precision import bf16_native

    return "bf16" if bf16_native(device) else "no"


class AlignmentData:
    """Paired inputs: encoder inputs (N, T, M) (a memory-mapped array is fine) and text embeddings (N, H);
    optionally `groups` (N,), e.g. each row's dataset, for CKA centred within each group (`losses`)."""

    def __init__(self, inputs: np.ndarray, text_emb: np.ndarray, groups: np.ndarray | None = None):
        if len(inputs) != len(text_emb):
            raise ValueError(f"{len(inputs)} audio inputs but {len(text_emb)} text embeddings")
        if len(inputs) < 2:
            raise ValueError("alignment needs at least 2 paired recordings")
        if not np.isfinite(text_emb).all():
            raise ValueError("text embeddings contain NaN or Inf")
        self.inputs = inputs
        self.text_emb = np.asarray(text_emb, dtype=np.float32)
        self.groups = None
        if groups is not None:
            names, ids = np.unique(np.asarray(groups).astype(str), return_inverse=True)
            if len(ids) != len(inputs):
                raise ValueError(f"{len(ids)} group labels for {len(inputs)} recordings")
            self.group_names, self.groups = list(names), ids.astype(np.int64)

    def __len__(self) -> int:
        return len(self.inputs)

    def subset(self, idx: np.ndarray) -> AlignmentData:
        """The rows `idx` (e.g. held-out subjects), without reading a memory-mapped input array into memory."""
        idx = np.asarray(idx, dtype=np.int64)
        groups = None if self.groups is None else np.asarray(self.group_names)[self.groups[idx]]
        return AlignmentData(_Rows(self.inputs, idx), self.text_emb[idx], groups)

    def batch(self, idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        order = np.argsort(idx)  # sorted reads are cheaper on a memmap
        x = np.asarray(self.inputs[idx[order]], dtype=np.float32)[np.argsort(order)]
        return torch.from_numpy(x), torch.from_numpy(self.text_emb[idx])


class _Rows:
    """Rows `idx` of an array, indexed lazily (a memory-mapped feature cache stays on disk)."""

    def __init__(self, base, idx: np.ndarray):
        self.base, self.idx = base, idx

    def __len__(self) -> int:
        return len(self.idx)

    def __getitem__(self, i):
        return self.base[self.idx[i]]


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """All-gather along dim 0 keeping the autograd graph (identity in one process)."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return x
    if torch.distributed.get_world_size() == 1:
        return x
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(x.contiguous()), dim=0)


def linear_warmup_decay(step: int, warmup: int, total: int) -> float:
    if step < warmup:
        return (step + 1) / max(1, warmup)
    return max(0.0, (total - step) / max(1, total - warmup))


def _rng_state() -> dict[str, Any]:
    """RNG states as tensors and plain types, so checkpoints load with `weights_only=True`."""
    _, keys, pos, has_gauss, gauss = np.random.get_state()
    version, py_state, py_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": {"version": version, "state": torch.tensor(py_state, dtype=torch.int64), "gauss": py_gauss},
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def _set_rng_state(s: dict[str, Any]) -> None:
    torch.set_rng_state(s["torch"])
    n = s["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    p = s["python"]
    random.setstate((p["version"], tuple(int(v) for v in p["state"]), p["gauss"]))
    if s.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class Trainer:
    """Trains an `AculaModel` on `AlignmentData`; writes checkpoints and a CSV log to `out_dir`."""

    def __init__(self, model: AculaModel, data: AlignmentData, config: TrainConfig, out_dir: str | Path,
                 run_config: dict[str, Any] | None = None, accelerator=None, heldout: AlignmentData | None = None):
        from accelerate import Accelerator

        if config.align_features == "auto":
            config = replace(config, align_features="masked" if model.encoder.masks_tokens else "full")
        if config.mixed_precision == "auto":  # a given accelerator's precision is what runs
            config = replace(config, mixed_precision=str(accelerator.mixed_precision) if accelerator is not None else
                             training_precision("auto", "cuda" if torch.cuda.is_available() else "cpu"))
        self.cfg = config
        self.out_dir = Path(out_dir)
        self.data = data
        self.heldout = heldout  # pairs never trained on: their CKA is logged at each epoch's end
        self.run_config = run_config or {}
        self.acc = accelerator or Accelerator(mixed_precision=config.mixed_precision)
        self.world = self.acc.num_processes
        self.rank = self.acc.process_index
        if config.batch_size % self.world:
            raise ValueError(f"batch_size {config.batch_size} is not divisible by {self.world} processes")
        self.loss_fn = alignment_loss(config.loss)
        seed_everything(config.seed)
        if config.grad_checkpointing and hasattr(model.encoder, "grad_checkpointing"):
            model.encoder.grad_checkpointing = True
        params = [p for p in model.parameters() if p.requires_grad]
        decay = [p for p in params if p.ndim >= 2]
        no_decay = [p for p in params if p.ndim < 2]  # norms, biases and tokens are not decayed
        optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=config.lr,
        )
        self.steps_per_epoch = len(data) // (config.batch_size * config.grad_accum)
        if self.steps_per_epoch == 0:
            raise ValueError(
                f"{len(data)} recordings are fewer than one optimiser step "
                f"(batch {config.batch_size} x accumulation {config.grad_accum})"
            )
        self.total_steps = self.steps_per_epoch * config.epochs
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: linear_warmup_decay(s, config.warmup_steps, self.total_steps)
        )
        if config.unmasked_epochs and config.align_features != "masked":
            raise ValueError("unmasked_epochs is the final unmasked phase of --align-features masked")
        if not 0 <= config.unmasked_epochs <= config.epochs:
            raise ValueError(f"unmasked_epochs {config.unmasked_epochs} is outside 0..{config.epochs} epochs")
        model.align_features = config.align_features  # the model checks that its encoder can
        self.model, self.optimizer = self.acc.prepare(model, optimizer)
        self.step = 0  # optimiser steps done
        self.history: list[dict[str, float]] = []

    # ---- checkpoints -------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        m: AculaModel = self.acc.unwrap_model(self.model)
        return {
            "epoch": self.step // self.steps_per_epoch,
            "step": self.step,
            "audio_model_state_dict": m.encoder.state_dict(),
            "audio_projection_mlp_state_dict": m.audio_projection.state_dict(),
            "language_projection_mlp_state_dict": m.language_projection.state_dict(),
            "optimizer_state_dict": self.optimizer.state_dict(),
            "scheduler_state_dict": self.scheduler.state_dict(),
            "rng_state": _rng_state(),
            "config": {
                "train": asdict(self.cfg),
                "encoder": dict(m.encoder.config),
                "heads": m.head_config,
                **self.run_config,
            },
        }

    def save(self, path: Path) -> None:
        if self.acc.is_main_process:
            with atomic_path(path) as tmp:
                torch.save(self.state(), tmp)
        self.acc.wait_for_everyone()

    def resume(self, path: Path) -> None:
        try:
            ck = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # truncated file, foreign pickle, ...: never trust it, never crash with a traceback
            raise ValueError(f"{path}: cannot resume from this checkpoint ({type(e).__name__}: {str(e)[:200]}); "
                             f"delete it or rerun with --no-resume to start over") from e
        m: AculaModel = self.acc.unwrap_model(self.model)
        try:
            m.encoder.load_state_dict(ck["audio_model_state_dict"], strict=True)
            m.audio_projection.load_state_dict(ck["audio_projection_mlp_state_dict"], strict=True)
            m.language_projection.load_state_dict(ck["language_projection_mlp_state_dict"], strict=True)
        except RuntimeError as e:  # another encoder, head width or --[no-]audio-input-norm than this run's
            why = " ".join(str(e).split())[:300]
            raise ValueError(f"{path}: was written by a run with another model ({why}); resume with "
                             f"the same options, or rerun with --no-resume to start over") from None
        self.optimizer.load_state_dict(ck["optimizer_state_dict"])
        self.scheduler.load_state_dict(ck["scheduler_state_dict"])
        _set_rng_state(ck["rng_state"])
        self.step = int(ck["step"])

    # ---- the loop ----------------------------------------------------------------------
    def _permutation(self, epoch: int) -> np.ndarray:
        """Row order of one epoch; consecutive `batch_size` rows form a global batch.

        With groups (CKA centred within each group) a mixed batch wastes its cross-group pairs, and
        the CKA of each group is estimated from a few rows only; so each batch is drawn from one group
        (a group's last partial batch is topped up from its own rows) and the batches are shuffled.
        """
        rng = np.random.default_rng([self.cfg.seed, epoch])
        groups = getattr(self.data, "groups", None)
        if groups is None or not self.cfg.group_batches:
            return rng.permutation(len(self.data))
        b = self.cfg.batch_size
        chunks = []
        for g in np.unique(groups):
            rows = rng.permutation(np.flatnonzero(groups == g))
            n = -(-len(rows) // b) * b
            rows = np.concatenate([rows, rng.choice(rows, n - len(rows), replace=len(rows) < n - len(rows))])
            chunks += list(rows.reshape(-1, b))
        order = rng.permutation(len(chunks))
        return np.concatenate([chunks[i] for i in order])

    def compute_loss(self, x: torch.Tensor, t: torch.Tensor,
                     groups: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        aligning = self.cfg.lambda_align > 0  # MAM only: no alignment features are computed at all
        with self.acc.autocast():
            a, p, mam = self.model(x, t, with_mam=self.cfg.lambda_mam > 0, with_align=aligning)
        if aligning:
            a_all, p_all = gather_with_grad(a.float()), gather_with_grad(p.float())
            if groups is not None and self.world > 1:
                groups = self.acc.gather(groups)  # rank order, as the projections
            align = self.loss_fn(a_all, p_all, groups)
        else:
            align = mam.new_zeros((), dtype=torch.float32)
        loss = self.cfg.lambda_align * align + self.cfg.lambda_mam * mam.float()
        # each process back-propagates its local MAM term (DDP averages the gradients); the logged
        # value is the mean over processes, i.e. the loss of the global batch
        mam_all = self.acc.reduce(mam.detach().float(), "mean") if self.world > 1 else mam.detach().float()
        total = self.cfg.lambda_align * float(align.detach()) + self.cfg.lambda_mam * float(mam_all)
        return loss, {"loss": total, "align": float(align.detach()), "mam": float(mam_all)}

    def _align_features(self, epoch: int) -> str:
        tuned = self.cfg.align_features == "masked" and epoch >= self.cfg.epochs - self.cfg.unmasked_epochs
        return "full" if tuned else self.cfg.align_features

    def fit(self, resume: bool = True, max_steps: int | None = None) -> list[dict[str, float]]:
        """Train to the end (or to `max_steps` optimiser steps, e.g. for time-limited jobs), resuming
        from `checkpoint_last.pt` when present."""
        cfg = self.cfg
        last = self.out_dir / "checkpoint_last.pt"
        if resume and last.exists():
            self.resume(last)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.out_dir / "train_log.csv"
        if self.acc.is_main_process:
            self._truncate_log(log_path)
        stop = self.total_steps if max_steps is None else min(self.total_steps, max_steps)
        tracking = self._tracking()
        local = cfg.batch_size // self.world
        micro_per_step = cfg.grad_accum
        bar = tqdm(total=self.total_steps, initial=self.step, desc="align", unit="step",
                   disable=not self.acc.is_main_process, dynamic_ncols=True)
        self.model.train()
        t0 = t_step = time.time()
        while self.step < stop:
            epoch, in_epoch = divmod(self.step, self.steps_per_epoch)
            perm = self._permutation(epoch)
            self.acc.unwrap_model(self.model).align_features = self._align_features(epoch)
            terms = {"loss": 0.0, "align": 0.0, "mam": 0.0}
            for micro in range(micro_per_step):
                start = (in_epoch * micro_per_step + micro) * cfg.batch_size
                idx = perm[start + self.rank * local: start + (self.rank + 1) * local]
                x, t = self.data.batch(idx)
                x, t = x.to(self.acc.device), t.to(self.acc.device)
                groups = getattr(self.data, "groups", None)
                g = None if groups is None else torch.from_numpy(groups[idx]).to(self.acc.device)
                sync = micro == micro_per_step - 1
                ctx = self.acc.no_sync(self.model) if (not sync and self.world > 1) else contextlib.nullcontext()
                with ctx:
                    loss, parts = self.compute_loss(x, t, g)
                    if not torch.isfinite(loss):
                        raise FloatingPointError(f"non-finite loss at step {self.step}: {parts}")
                    self.acc.backward(loss / micro_per_step)
                for k in terms:
                    terms[k] += parts[k] / micro_per_step
            if cfg.clip_norm:
                self.acc.clip_grad_norm_(self.model.parameters(), cfg.clip_norm)
            self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
            self.step += 1
            now = time.time()
            row = {"step": self.step, "epoch": epoch, **terms, "lr": self.scheduler.get_last_lr()[0],
                   "seconds": now - t0}
            throughput = cfg.batch_size * micro_per_step / max(now - t_step, 1e-9)  # trackers only: not a result
            end_of_epoch = self.step % self.steps_per_epoch == 0
            if self.heldout is not None:
                row["heldout_cka"] = self.heldout_cka() if end_of_epoch else ""
                self.model.train()
            t_step = time.time()  # the held-out pass is not training throughput
            self.history.append(row)
            if self.acc.is_main_process:
                self._log(log_path, row)
                values = {f"train/{k}": row[k] for k in ("loss", "align", "mam", "lr")}
                values["train/samples_per_s"] = throughput
                if row.get("heldout_cka", "") != "":
                    values["heldout/cka"] = row["heldout_cka"]
                tracking.log(values, self.step)
            bar.set_postfix(loss=f"{terms['loss']:.4f}", align=f"{terms['align']:.4f}", mam=f"{terms['mam']:.4f}")
            bar.update(1)
            if end_of_epoch or (cfg.save_every_steps and self.step % cfg.save_every_steps == 0):
                self.save(last)
        bar.close()
        tracking.finish()
        if self.step == self.total_steps:
            self.save(self.out_dir / "acula_final.pt")
        return self.history

    def _truncate_log(self, path: Path) -> None:
        """Drop log rows past the resumed step (written after the last checkpoint by a killed run)."""
        if not path.exists():
            return
        with open(path, newline="") as f:  # a row torn by a kill has an empty or partial step: drop it
            rows = [r for r in csv.DictReader(f)
                    if (r.get("step") or "").isdigit() and int(r["step"]) <= self.step and None not in r.values()]
        if rows:
            with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=list(rows[0]))
                w.writeheader()
                w.writerows(rows)
        else:
            path.unlink()

    def _log(self, path: Path, row: dict[str, float]) -> None:
        new = not path.exists()
        with open(path, "w" if new else "a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(row))
            if new:
                w.writeheader()
            w.writerow(row)

    def _tracking(self):
        """TensorBoard / W&B through Accelerate's trackers (acula.tracking), main process only."""
        from ..tracking import Tracking

        names = (*self.cfg.report_to, *(("tensorboard",) if self.cfg.tensorboard else ()))
        return Tracking(names, self.out_dir, project="acula-align", run_name=self.out_dir.name,
                        config={"train": asdict(self.cfg), **self.run_config}, enabled=self.acc.is_main_process)

    @torch.no_grad()
    def heldout_cka(self, batch_size: int = 64) -> float:
        """Linear CKA (unbiased; within groups when the data has them) between the audio and report projections of
        the held-out pairs, in evaluation mode: how well alignment carries to recordings it never trained on."""
        m: AculaModel = self.acc.unwrap_model(self.model)  # no DDP collectives: any process may call this
        m.eval()
        a, p = [], []
        for s in range(0, len(self.heldout), batch_size):
            x, t = self.heldout.batch(np.arange(s, min(s + batch_size, len(self.heldout))))
            with self.acc.autocast():
                ai, pi, _ = m(x.to(self.acc.device), t.to(self.acc.device), with_mam=False)
            a.append(ai.float().cpu())
            p.append(pi.float().cpu())
        groups = None if self.heldout.groups is None else torch.from_numpy(self.heldout.groups)
        from .losses import linear_cka_debiased

        return float(linear_cka_debiased(torch.cat(a), torch.cat(p), groups))
