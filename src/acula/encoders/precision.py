"""bf16 for inference where the hardware runs it natively, fp32 elsewhere.

bf16 autocast speeds up extraction only where the hardware has bf16 arithmetic: CUDA GPUs from Ampere on, and
x86 CPUs with AVX512-BF16 or AMX (oneDNN then runs bf16 matrix products at about twice the fp32 rate and more).
Without it, torch emulates bf16 and is slower than fp32, so "auto" picks bf16 only where it pays. Embeddings under
bf16 differ from fp32 at the 1e-5 level in cosine (tests/test_precision.py checks >= 0.999).
"""

from __future__ import annotations

import contextlib
import functools
from pathlib import Path

import torch

PRECISIONS = ("auto", "fp32", "bf16")
_CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # /proc/cpuinfo names: AVX512-BF16 dot products, AMX bf16 tiles


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU feature flags of /proc/cpuinfo (empty where there is none, e.g. macOS)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "flags":
                return frozenset(value.split())
    except OSError:
        pass
    return frozenset()


def bf16_native(device: str | torch.device = "cpu") -> bool:
    """Whether `device` computes in bf16 natively (so bf16 autocast is faster than fp32 there)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type == "cpu":
        return any(f in cpu_flags() for f in _CPU_BF16_FLAGS)
    return False


def resolve_precision(precision: str, device: str | torch.device = "cpu") -> str:
    """"auto" -> "bf16" where `bf16_native(device)`, else "fp32"; "fp32" and "bf16" are kept as asked."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "auto":
        return "bf16" if bf16_native(device) else "fp32"
    return precision


def autocast(precision: str, device: str | torch.device = "cpu") -> contextlib.AbstractContextManager:
    """bf16 autocast on `device` for "bf16" (and for "auto" where native); a no-op context for fp32."""
    device = torch.device(device)
    if resolve_precision(precision, device) == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
