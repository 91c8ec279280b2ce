"""`acula analyze cka`: linear CKA between every encoder layer and every teacher layer.

Where in the audio network does the structure of clinical language show up, and did alignment
move it there? For a corpus (audio_path, Gen_Report) this pools each encoder block's output per
recording, pools each teacher hidden state per report, and fills the matrix
CKA(encoder layer i, teacher layer j) with linear CKA on sample Grams (`acula.align.losses`).
With a second checkpoint (after alignment) both matrices are drawn side by side on one scale.

Layers come from `encoder.layer_outputs(x)` when an encoder defines it; otherwise forward hooks on
its main stack of blocks (the shallowest `blocks` / `layers` / `layer` / `backbone` / `stages`
container outside the decoder), mean-pooled over tokens (CLS token dropped when the encoder has
one) or over space for conv maps; the encoder's pooled feature is the last row.
"""

from __future__ import annotations

import argparse
import csv
import io
import random
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from .. import _io

STACK_NAMES = ("blocks", "_blocks", "layers", "layer", "backbone", "stages")
SKIP_PARTS = ("decoder", "mam", "head", "classifier")


def find_layer_stack(encoder: nn.Module) -> tuple[str, nn.Module]:
    """(name, container) of the encoder's main stack: shallowest first, then the longest."""
    found = []
    for name, mod in encoder.named_modules():
        last = name.rsplit(".", 1)[-1]
        if (last in STACK_NAMES and isinstance(mod, (nn.ModuleList, nn.Sequential)) and len(mod) > 0
                and not any(p in name.lower() for p in SKIP_PARTS)):
            found.append((name.count("."), -len(mod), name, mod))
    if not found:
        raise ValueError(f"{type(encoder).__name__}: no layer stack found (a ModuleList/Sequential named "
                         f"{'/'.join(STACK_NAMES)}); define layer_outputs(x) -> [(name, (B, D))] on the encoder")
    _, _, name, mod = min(found, key=lambda t: t[:2])
    return name, mod


def _pool(out, batch: int, drop_cls: bool, name: str) -> torch.Tensor:
    """A layer output -> (batch, D): tokens averaged (B, N, D), conv maps averaged over space (B, C, H, W)."""
    if isinstance(out, (tuple, list)):
        out = out[0]
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"layer {name}: output is {type(out).__name__}, expected a tensor")
    t = out.detach().float()
    if t.ndim == 3:
        t = (t[:, 1:] if drop_cls and t.shape[1] > 1 else t).mean(1)
    elif t.ndim >= 4:
        t = t.flatten(2).mean(-1)
    elif t.ndim != 2:
        raise ValueError(f"layer {name}: cannot pool an output of shape {tuple(t.shape)}")
    rows = t.shape[0]
    if rows != batch:  # encoders that fold patches into the batch (YAMNet: B*P, batch-major)
        if rows % batch:
            raise ValueError(f"layer {name}: batch {rows} is not a multiple of the input batch {batch}")
        t = t.view(batch, rows // batch, -1).mean(1)
    return t


@torch.inference_mode()
def layer_features(encoder: nn.Module, x: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
    """[(layer name, (B, D) float32)] for one batch of encoder inputs, the pooled feature last."""
    if hasattr(encoder, "layer_outputs"):
        return [(n, t.float()) for n, t in encoder.layer_outputs(x)]
    stack_name, stack = find_layer_stack(encoder)
    drop_cls = isinstance(getattr(encoder, "cls_token", None), torch.Tensor)
    batch = x.shape[0]
    captured: list[list[torch.Tensor]] = [[] for _ in stack]
    hooks = [child.register_forward_hook(
        lambda mod, inp, out, i=i: captured[i].append(_pool(out, batch, drop_cls, f"{stack_name}.{i}")))
        for i, child in enumerate(stack)]
    try:
        final = encoder.forward_feature(x)
    finally:
        for h in hooks:
            h.remove()
    out = []
    for i, calls in enumerate(captured):
        if not calls:
            raise RuntimeError(f"layer {stack_name}.{i} did not run in forward_feature")
        out.append((f"{stack_name}.{i}", torch.stack(calls).mean(0)))  # several calls (crops): averaged
    out.append(("feature", final.detach().float()))
    return out


def _centered_gram(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    x = x - x.mean(axis=0, keepdims=True)
    return x @ x.T


def cka_matrix(audio: Sequence[tuple[str, np.ndarray]], text: np.ndarray) -> np.ndarray:
    """(encoder layers, teacher layers) linear CKA; audio [(name, (N, D))], text (L+1, N, H).

    The same quantity as `acula.align.losses.linear_cka` (cosine of centred sample Grams), with
    each layer's Gram computed once instead of once per pair.
    """
    ka = [_centered_gram(a) for _, a in audio]
    kt = [_centered_gram(t) for t in text]
    if ka and kt and ka[0].shape != kt[0].shape:
        raise ValueError(f"audio has {ka[0].shape[0]} recordings, text {kt[0].shape[0]}: they must be paired")
    na = [np.linalg.norm(k) for k in ka]
    nt = [np.linalg.norm(k) for k in kt]
    mat = np.zeros((len(ka), len(kt)), dtype=np.float64)
    for i, k in enumerate(ka):
        for j, l in enumerate(kt):
            den = na[i] * nt[j]
            mat[i, j] = float((k * l).sum() / den) if den > 0 else 0.0  # a constant layer relates to nothing
    return np.clip(mat, 0.0, 1.0)  # rounding can leave 1 + 1e-12


@torch.inference_mode()
def encoder_layer_features(encoder, paths: Sequence[str], policy: str | None = None, batch_size: int = 16,
                           device: str | torch.device = "cpu", progress: bool = True
                           ) -> tuple[list[tuple[str, np.ndarray]], list[int], list[tuple[str, str]]]:
    """Per-layer clip features (windows of a clip averaged), indices of the clips read, and skips.

    The layers of a batch go through the one pooling loop side by side (concatenated), so a layer's clip
    feature is pooled exactly as the encoder's final feature is everywhere else.
    """
    from tqdm.auto import tqdm

    from ..extract import read_clip
    from ..features import pool_files

    encoder.eval().to(device)
    names: list[str] = []
    dims: list[int] = []

    def forward(x: torch.Tensor) -> torch.Tensor:
        outs = layer_features(encoder, x.to(device))
        if not names:
            names.extend(n for n, _ in outs)
            dims.extend(int(t.shape[1]) for _, t in outs)
        return torch.cat([t for _, t in outs], dim=1).cpu()

    with tqdm(total=len(paths), desc="layer features", unit="clip", disable=not progress) as bar:
        rows, skips = pool_files(paths, lambda p: read_clip(p, encoder, policy), forward, batch_size, bar=bar)
    kept = sorted(rows)
    skipped = [(str(paths[i]), r) for i, r in skips]
    if not kept:
        return [], kept, skipped
    per_layer = np.split(np.stack([rows[i] for i in kept]), np.cumsum(dims)[:-1], axis=1)
    return list(zip(names, per_layer)), kept, skipped


# =============================================================================== outputs

def _matrix_csv(mat: np.ndarray, rows: Sequence[str], cols: Sequence[str]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["encoder_layer", *cols])
    for name, r in zip(rows, mat):
        w.writerow([name, *(f"{v:.6f}" for v in r)])
    return buf.getvalue()


def read_matrix_csv(path: str | Path) -> tuple[np.ndarray, list[str], list[str]]:
    rows = list(csv.reader(Path(path).read_text(encoding="utf-8").splitlines()))
    cols, body = rows[0][1:], rows[1:]
    return np.array([[float(v) for v in r[1:]] for r in body]), [r[0] for r in body], cols


def plot_heatmaps(mats: dict[str, np.ndarray], rows: Sequence[str], cols: Sequence[str], path: str | Path,
                  title: str = "") -> None:
    """One heatmap per matrix, side by side, on the shared scale [0, 1] (atomic PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(mats)
    fig, axes = plt.subplots(1, n, figsize=(1.2 + 0.45 * len(cols) * n + 1.5 * n, 1.2 + 0.4 * len(rows)),
                             squeeze=False, constrained_layout=True)
    im = None
    for ax, (label, mat) in zip(axes[0], mats.items()):
        im = ax.imshow(mat, vmin=0.0, vmax=1.0, cmap="viridis", aspect="auto")
        ax.set_title(label)
        ax.set_xticks(range(len(cols)), cols, rotation=90, fontsize=7)
        ax.set_yticks(range(len(rows)), rows, fontsize=7)
        ax.set_xlabel("teacher layer")
        ax.set_ylabel("encoder layer")
        if mat.size <= 400:
            for (i, j), v in np.ndenumerate(mat):
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=6,
                        color="black" if v > 0.6 else "white")
    fig.colorbar(im, ax=axes[0].tolist(), label="linear CKA")
    if title:
        fig.suptitle(title, fontsize=9)
    with _io.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)


# =============================================================================== command

def run_cka(args: argparse.Namespace) -> dict:
    from ..datasets.manifest import read_manifest
    from ..encoders import create
    from ..text.teacher import Teacher

    out = Path(args.out)
    rows = read_manifest(args.manifest, required=("audio_path", "Gen_Report"))
    if args.max_recordings and len(rows) > args.max_recordings:
        rows = [rows[i] for i in sorted(random.Random(args.seed).sample(range(len(rows)), args.max_recordings))]
    opts = {"preset": args.preset} if args.preset else {}
    checkpoints = {"before": args.checkpoint, "after": args.checkpoint_after} if args.checkpoint_after else \
        {"encoder": args.checkpoint}

    audio, kept, skipped = {}, None, []
    for label, ckpt in checkpoints.items():
        torch.manual_seed(args.seed)  # an encoder without a checkpoint is a reproducible random init
        enc = create(args.encoder, checkpoint=ckpt, trust_checkpoint=args.trust_checkpoint, **opts)
        feats, k, skipped = encoder_layer_features(enc, [r["audio_path"] for r in rows], policy=args.policy,
                                                   batch_size=args.batch_size, device=args.device)
        if kept is not None and k != kept:
            raise RuntimeError("the two checkpoints read different recordings")  # same files, same reader
        audio[label], kept = feats, k
    if kept is None or len(kept) < 3:
        raise ValueError(f"{args.manifest}: only {len(kept or [])} readable recordings; CKA needs at least 3")
    teacher = Teacher(args.teacher, pooling=args.pooling, device=args.device)
    text = teacher.encode_layers([rows[i]["Gen_Report"] for i in kept])
    cols = ["embeddings"] + [f"layer {j}" for j in range(1, text.shape[0])]
    layer_names = [n for n, _ in next(iter(audio.values()))]

    mats = {label: cka_matrix(feats, text) for label, feats in audio.items()}
    files = {}
    for label, mat in mats.items():
        name = "cka.csv" if len(mats) == 1 else f"cka_{label}.csv"
        _io.write_text(out / name, _matrix_csv(mat, layer_names, cols))
        files[label] = str(out / name)
    title = f"{args.encoder} vs {args.teacher} on {len(kept)} recordings"
    plot_heatmaps({f"{label} ({Path(c).name if c else 'no checkpoint'})": mats[label]
                   for label, c in checkpoints.items()}, layer_names, cols, out / "cka.png", title)
    summary = {
        "manifest": str(args.manifest), "recordings": len(kept), "skipped": [list(s) for s in skipped],
        "encoder": args.encoder, "preset": args.preset, "checkpoints": checkpoints, "teacher": teacher.key,
        "encoder_layers": layer_names, "teacher_layers": cols, "csv": files, "png": str(out / "cka.png"),
        "best": {label: {"encoder_layer": layer_names[int(np.argmax(m) // m.shape[1])],
                         "teacher_layer": cols[int(np.argmax(m) % m.shape[1])], "cka": float(m.max())}
                 for label, m in mats.items()},
    }
    _io.write_json(out / "cka.json", summary)
    return summary
