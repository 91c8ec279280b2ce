"""Tolerances for float comparisons in the tests, derived from rounding rather than fitted on one machine.

Two float32 evaluations of the same network differ when their sums run in another order: another batch
size, another CPU (AVX-512 vs AVX2 vs SSE), another oneDNN or MKL kernel, another implementation of the
same formulas (the golden references). Each sum of n terms then carries a rounding error below
LAMBDA * sqrt(n) * u of the size of its values (the probabilistic bound of Higham & Mary, SIAM J. Sci.
Comput. 2019: it fails with probability below 2 exp(-LAMBDA^2 / 2) = 3e-8 per sum for LAMBDA = 6), and
through a network of `depth` chained reductions (normalised layers keep the relative error from growing)
these add up to at most depth times that. Two evaluations: twice.

    tol = 2 * depth * LAMBDA * sqrt(fan_in) * u * scale,    u = 2^-24 (float32), scale = max |values|

`net_shape(model)` reads depth (matmul, conv, attention and normalisation layers: on a chain, an upper bound
on any one path) and fan_in (the longest reduction) from the model itself.

Each check records its deviation when ACULA_NUMERICS_LOG names a file, so the worst deviation of every test
can be measured under every kernel path the CPU offers; `python tests/numerics.py` does that and prints the
table that docs/reliability.md shows.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

U32 = 2.0 ** -24  # unit roundoff of float32 (half its machine epsilon)
U64 = 2.0 ** -53  # unit roundoff of float64
LAMBDA = 6.0  # probabilistic rounding bound: exceeded by one sum with probability < 2 exp(-18) = 3e-8


@dataclass(frozen=True)
class Shape:
    depth: int  # chained reductions from input to output
    fan_in: int  # terms in the longest one

    def __add__(self, other: "Shape") -> "Shape":  # one network after another
        return Shape(self.depth + other.depth, max(self.fan_in, other.fan_in))


def net_shape(model, tokens: int = 1, exclude: tuple[str, ...] = ("mam_head", "decoder")) -> Shape:
    """Depth and longest reduction of `model`'s layers (those under a name in `exclude` left out): every Linear
    and Conv counts one reduction of in_features (in_channels / groups x kernel area) terms, every attention
    two (scores over the head width, values over `tokens`), every LayerNorm / GroupNorm one over its width."""
    from torch import nn

    depth, fan = 0, 1
    for name, m in model.named_modules():
        if any(part.startswith(exclude) for part in name.split(".")):
            continue
        if isinstance(m, nn.Linear):
            depth, fan = depth + 1, max(fan, m.in_features)
        elif isinstance(m, nn.modules.conv._ConvNd):
            depth, fan = depth + 1, max(fan, m.in_channels // m.groups * math.prod(m.kernel_size))
        elif isinstance(m, (nn.LayerNorm, nn.GroupNorm)):
            width = math.prod(m.normalized_shape) if isinstance(m, nn.LayerNorm) else m.num_channels // m.num_groups
            depth, fan = depth + 1, max(fan, width)
        elif "Attention" in type(m).__name__ and not any("Attention" in type(c).__name__ for c in m.children()):
            depth, fan = depth + 2, max(fan, tokens)
    return Shape(max(depth, 1), fan)


def reorder_tol(scale: float, shape: Shape, evaluations: int = 2, u: float = U32) -> float:
    """Largest difference between `evaluations` float evaluations (2: two float32 runs; 1: one float32 run
    against an exact or float64 value) of a network of `shape` whose values are of size `scale`."""
    return evaluations * shape.depth * LAMBDA * math.sqrt(shape.fan_in) * u * float(scale)


FRONT_END = Shape(2, 1024)  # a front end that is not nn layers: a DFT of <= 1024 points and a mel sum


def encoder_tol(encoder, *arrays, tokens: int = 1025, front_end: bool = False) -> float:
    """Two float32 runs of an acula encoder on values of `arrays`' size. A waveform encoder's own front end, or
    with `front_end` the log-mel too, may have run otherwise as well."""
    shape = net_shape(encoder, tokens=tokens)
    if front_end or getattr(getattr(encoder, "contract", None), "frontend", "logmel") == "waveform":
        shape = shape + FRONT_END
    return reorder_tol(scale_of(*arrays), shape)


def logmel_tol(wave: np.ndarray, evaluations: int = 2, n_fft: int = 1024, hop: int = 512) -> np.ndarray:
    """Per element: how far two float32 log-mels of `wave` (other FFT, kernels or order) can lie apart.
    Each DFT bin sums n_fft windowed samples (error <= LAMBDA sqrt(n_fft) u sum|frame|), the power and the
    513-bin mel sum add theirs, dB = 10 log10(mel) turns an absolute error into 4.34 x its share of the band
    (so quiet bands are the loose ones), the clip's loudest and quietest bands (unless clamped at -80 dB) move
    every value, and [0, 1] spans the clip's dB range; bands at the -80 dB floor stay there."""
    from acula.audio import mel_filterbank

    wave = _np(wave)
    if wave.ndim == 2:  # a batch of windows, each its own clip
        return np.stack([logmel_tol(w, evaluations, n_fft, hop) for w in wave])
    x = np.pad(wave.astype(np.float64), n_fft // 2)
    hann = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
    frames = np.stack([x[i * hop: i * hop + n_fft] * hann for i in range(1 + wave.size // hop)])
    mag = np.abs(np.fft.rfft(frames, axis=1))
    fb = mel_filterbank(16000, n_fft, 64, 50, 8000).astype(np.float64)
    e = LAMBDA * np.sqrt(n_fft) * U32 * np.abs(frames).sum(1, keepdims=True)
    mel = mag ** 2 @ fb.T
    d_mel = evaluations * ((2 * mag * e + e ** 2 + 2 * U32 * mag ** 2) @ fb.T + LAMBDA * np.sqrt(513) * U32 * mel)
    d_db = d_mel * 10 / np.log(10) / np.maximum(mel, 1e-10)  # each band's own dB error
    db = 10 * np.log10(np.maximum(mel, 1e-10) / mel.max())
    floor = db + d_db < -80  # clamped to the floor in both evaluations
    d_hi, d_lo = d_db.flat[mel.argmax()], 0.0 if db.min() < -80 else d_db.flat[mel.argmin()]
    span = min(80.0, -db.min()) or 1.0
    return (np.where(floor, 0.0, d_db) + d_hi + 2 * d_lo) / span + 2 * U32  # + each one's float32 output


def scale_of(*arrays) -> float:
    """Size of the compared values: the largest magnitude among them."""
    return max(float(np.max(np.abs(_np(a)))) if _np(a).size else 0.0 for a in arrays)


def assert_close(got, want, tol: float, what: str = "") -> float:
    """max |got - want| <= tol (elementwise tolerances broadcast); records the deviation; returns it."""
    g, w = _np(got).astype(np.float64), _np(want).astype(np.float64)
    assert g.shape == w.shape, f"{what}: shapes {g.shape} vs {w.shape}"
    diff = np.abs(g - w)
    tol_arr = np.broadcast_to(np.asarray(tol, np.float64), diff.shape)
    with np.errstate(divide="ignore", invalid="ignore"):  # the element nearest its tolerance: largest share of it
        share = np.where(diff == 0, 0.0, diff / tol_arr)
    worst = int(np.argmax(share)) if diff.size else 0
    dev = float(diff.reshape(-1)[worst]) if diff.size else 0.0
    bound = float(tol_arr.reshape(-1)[worst]) if diff.size else float(np.max(tol))
    _record(what, float(diff.max()) if diff.size else 0.0, dev, bound)
    assert not diff.size or (diff <= tol_arr).all(), \
        f"{what or 'values'}: |difference| {dev:.3g} > tolerance {bound:.3g} (of {diff.size}; max {diff.max():.3g})"
    return float(diff.max()) if diff.size else 0.0


def _np(a) -> np.ndarray:
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    return np.asarray(a)


def _record(what: str, max_dev: float, dev: float, tol: float) -> None:
    path = os.environ.get("ACULA_NUMERICS_LOG")
    if not path:
        return
    import torch

    test = os.environ.get("PYTEST_CURRENT_TEST", "?").split(" ")[0]
    row = {"test": test, "what": what, "dev": dev, "tol": tol, "max_dev": max_dev,
           "ratio": dev / tol if tol > 0 else (0.0 if dev == 0 else math.inf),
           "capability": torch.backends.cpu.get_cpu_capability()}
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")


# ------------------------------------------------------------------------------------------------------------
# `python tests/numerics.py`: the numerical tests under every kernel path this CPU runs, and their worst deviations

# kernel paths: ATen's own vector kernels (ATEN_CPU_CAPABILITY), oneDNN's convolutions and MKL's GEMMs capped alike
PATHS = {
    "default": {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41", "MKL_ENABLE_INSTRUCTIONS": "SSE4_2"},
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"},
    "native": {},
}


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            return {w for line in f if line.startswith("flags") for w in line.split(":", 1)[1].split()}
    except OSError:
        return set()


def _run(paths: list[str], out_dir: str, pytest_args: list[str]) -> None:
    import subprocess
    import sys

    os.makedirs(out_dir, exist_ok=True)
    for name in paths:
        log = os.path.join(out_dir, f"{name}.jsonl")
        if os.path.exists(log):
            os.remove(log)
        env = {k: v for k, v in os.environ.items() if k not in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA",
                                                                 "MKL_ENABLE_INSTRUCTIONS")}
        env.update(PATHS[name], ACULA_NUMERICS_LOG=os.path.abspath(log))
        print(f"== {name}: {' '.join(f'{k}={v}' for k, v in PATHS[name].items()) or '(no overrides)'}", flush=True)
        subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "numerics",
                        *pytest_args, os.path.dirname(os.path.abspath(__file__))], env=env, check=False)


def table(out_dir: str) -> str:
    """Markdown: per test (all its cases), the worst deviation and its share of the tolerance on each kernel path."""
    rows: dict[str, dict[str, dict]] = {}
    caps: dict[str, str] = {}
    for name in PATHS:
        log = os.path.join(out_dir, f"{name}.jsonl")
        if not os.path.exists(log):
            continue
        with open(log, encoding="utf-8") as f:
            for line in f:
                r = json.loads(line)
                caps[name] = r["capability"]
                file, _, func = r["test"].partition("::")
                test = f"{Path(file).stem}::{func.split('[', 1)[0]}"  # parametrised cases: their worst
                best = rows.setdefault(test, {}).get(name)
                if best is None or r["ratio"] > best["ratio"]:
                    rows[test][name] = r
    names = [n for n in PATHS if n in caps]
    head = "| test | " + " | ".join(f"{n} ({caps[n]})" for n in names) + " |"
    lines = [head, "|---|" + "---|" * len(names)]
    for test in sorted(rows):
        cells = []
        for n in names:
            r = rows[test].get(n)
            cells.append("–" if r is None else f"{r['dev']:.2g} ({100 * r['ratio']:.1f}%)")
        lines.append(f"| `{test}` | " + " | ".join(cells) + " |")
    worst = max((r["ratio"] for t in rows.values() for r in t.values()), default=0.0)
    lines.append("")
    lines.append(f"Deviation at the check's worst element, in parentheses its share of that element's tolerance; "
                 f"largest share anywhere {100 * worst:.1f}%.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(description="Run the numerical tests under every kernel path; print the table.")
    p.add_argument("--out", default="runs/numerics", help="folder for the per-path logs")
    p.add_argument("--paths", default=None, help="comma-separated subset of " + ",".join(PATHS))
    p.add_argument("--table-only", action="store_true", help="only print the table of existing logs")
    p.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    args = p.parse_args(argv)
    flags = _cpu_flags()
    paths = args.paths.split(",") if args.paths else [n for n in PATHS if n != "avx2" or "avx2" in flags]
    if not args.table_only:
        _run(paths, args.out, args.pytest_args)
    print(table(args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
