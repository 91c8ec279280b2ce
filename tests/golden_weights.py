"""Deterministic weights for the golden tests (`../shared/reference/golden/README.md`).

The golden outputs were produced by the original OPERA classes with weights drawn by this exact
recipe, so a re-implementation that loads these weights must reproduce them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

KEEP = ("pos_embed", "decoder_pos_embed", "relative_position_index", "attn_mask",
        "spectrogram_extractor", "logmel_extractor", "relative_coordinates_log")


def splitmix64(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def uniform(i: int, n: int) -> np.ndarray:
    j = np.arange(n, dtype=np.uint64) + (np.uint64(i) << np.uint64(32))
    u = (splitmix64(j) >> np.uint64(11)).astype(np.float64) / float(1 << 53)
    return 2.0 * u - 1.0


def read_tsv(path: Path) -> list[tuple[str, tuple[int, ...], str]]:
    """Rows of a `opera-*-state-dict.tsv`: (key, shape, dtype), header skipped."""
    rows = []
    lines = path.read_text().splitlines()
    header = lines[0].split("\t")
    for line in lines[1:]:
        if not line.strip():
            continue
        f = dict(zip(header, line.split("\t")))
        shape_txt = f.get("shape", "").strip("()[] ")
        if shape_txt in ("", "scalar"):  # 0-d entries, e.g. BatchNorm's num_batches_tracked
            shape = ()
        else:
            shape = tuple(int(s) for s in shape_txt.replace("x", ",").split(",") if s.strip())
        rows.append((f["key"], shape, f.get("dtype", "float32")))
    return rows


def golden_state_dict(model_state: dict[str, torch.Tensor], tsv: Path, bn_stats: Path | None = None) -> dict[str, torch.Tensor]:
    """Walk the published key order; fill every drawable entry, keep the model's own value otherwise.

    Keys in the TSV that the model does not have (recomputed buffers such as attention masks) are
    skipped but still advance the row index, exactly as the reference walk does.
    """
    out = {k: v.clone() for k, v in model_state.items()}
    for i, (key, shape, dtype) in enumerate(read_tsv(tsv)):
        if not dtype.startswith("float") or any(s in key for s in KEEP):
            continue
        n = int(np.prod(shape)) if shape else 1
        u = uniform(i, n)
        if len(shape) >= 2:
            v = u * np.sqrt(3.0 / (n // shape[0]))
        elif key.endswith("running_var"):
            v = 1.0 + 0.5 * np.abs(u)
        elif key.endswith("weight"):
            v = 1.0 + 0.1 * u
        else:
            v = 0.1 * u
        if key in out:
            out[key] = torch.from_numpy(v.reshape(shape)).to(out[key].dtype)
    if bn_stats is not None:
        with np.load(bn_stats) as z:
            for k in z.files:
                if k in out:
                    out[k] = torch.from_numpy(z[k]).to(out[k].dtype)
    return out
