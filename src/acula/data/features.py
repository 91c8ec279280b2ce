"""Preprocessed-feature cache: decode, resample and log-mel every clip once per corpus, not once per epoch.

The published loop runs librosa on every clip at every epoch. Here a corpus is turned once into memory-mapped
shards that training (`first_windows()` is an array-like `AlignmentData` can index) and extraction
(`iter_batches`) read. Memory stays flat as the corpus grows: a worker streams its shard's windows to disk clip
by clip, and readers only touch the rows they ask for.

    out_dir/meta.json          fingerprint of the preprocessing, window shape, shard layout, hash of the path list
    out_dir/shard-00000.npy    float32 (n_windows, T, M), every kept window of the shard's clips, in input order
    out_dir/shard-00000.json   per clip: path and window offset/count, or the reason it was skipped;
                               per window: the input index of its clip

Every file appears by atomic rename, the NPY before its JSON, so a killed build leaves only whole shards; a
rerun computes just the missing ones and ends byte-identical to an uninterrupted build (nothing in the files
depends on timing, worker count or order of completion). A directory built with other preprocessing settings
is refused, never silently reused or overwritten. The cache is keyed on the list of paths, not on the files'
contents: after editing audio in place, rebuild with `overwrite=True`.
"""

from __future__ import annotations

import collections
import concurrent.futures as cf
import contextlib
import fcntl
import json
import math
import multiprocessing as mp
import os
import sys
import tempfile
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from tqdm.auto import tqdm

from .._io import atomic_path, sha256_text, write_json
from ..audio.frontend import logmel
from ..audio.io import AudioError
from ..audio.spec import InputSpec
from ..encoders.base import InputContract
from ..features import read_inputs

FORMAT = "acula-feature-cache"
FORMAT_VERSION = 1
POLICIES = ("acula", "opera")  # fixed-length windows; extract's "whole" policy has no fixed shape to store
DTYPE = np.dtype("<f4")
WORKER_CRASHED = "worker crashed"
_MAX_OPEN_SHARDS = 32  # memmaps kept open for random access (each holds a file descriptor)
_COPY_ROWS = 256  # windows copied per step from a worker's spill file into the final .npy


# ----------------------------------------------------------------------------------------------------------
# settings and file names


def cache_spec(contract: InputContract, policy: str | InputSpec = "acula") -> InputSpec:
    """The spec of the windows a cache holds: fixed-length log-mel windows, the only kind that stacks."""
    if contract.frontend != "logmel":
        raise ValueError(f"feature cache stores log-mel windows, but the encoder contract's frontend is "
                         f"{contract.frontend!r}; extract such encoders from the audio files directly")
    name = policy.policy if isinstance(policy, InputSpec) else policy
    if name not in POLICIES:
        raise ValueError(f"feature cache: unknown window policy {name!r}; choose one of {list(POLICIES)}")
    return policy if isinstance(policy, InputSpec) else InputSpec.of(contract, policy)


def cache_fingerprint(contract: InputContract, policy: str | InputSpec = "acula") -> str:
    return cache_spec(contract, policy).fingerprint(contract)


def _shard_name(s: int, ext: str) -> str:
    return f"shard-{s:05d}.{ext}"


def _is_own_file(name: str) -> bool:
    """Names a build writes (so overwrite and temp clean-up never touch anything else in the folder)."""
    return (name == "meta.json" or (name.startswith("shard-") and name.endswith((".npy", ".json")))
            or (name.startswith((".shard-", ".meta.json.")) and name.endswith(".tmp")))


def _npy_shape(path: Path) -> tuple[tuple[int, ...], np.dtype, int]:
    """(shape, dtype, data offset) from an .npy header, without reading the data."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read(f)
        if fortran:
            raise ValueError(f"{path}: Fortran-ordered array, not written by the feature cache")
        return tuple(shape), dtype, f.tell()


# ----------------------------------------------------------------------------------------------------------
# computing one shard (runs in a worker process or in-process)


@dataclass
class _ShardJob:
    out_dir: str
    shard: int
    start: int  # input index of the shard's first clip
    paths: list[str]
    contract: InputContract
    spec: InputSpec
    window_shape: tuple[int, int]
    fingerprint: str
    strict: bool
    excluded: dict[int, str] = field(default_factory=dict)  # position in shard -> reason (clips that crashed a worker)


def _read_windows(path: str, contract: InputContract, spec: InputSpec) -> np.ndarray:
    return read_inputs(path, contract, spec, "feature cache").numpy()


def compute_shard(job: _ShardJob, progress: Callable[[int], None] = lambda n: None) -> None:
    """Write one shard: windows stream to a spill file clip by clip, then become the .npy (so a worker holds
    one clip, not one shard, in memory), then the .json that marks the shard complete."""
    out = Path(job.out_dir)
    T, M = job.window_shape
    clips, window_clip = [], []
    fd, spill = tempfile.mkstemp(prefix=f".shard-{job.shard:05d}.spill.", suffix=".tmp", dir=out)
    try:
        with os.fdopen(fd, "wb") as f:
            for j, path in enumerate(job.paths):
                index = job.start + j
                if j in job.excluded:
                    clips.append({"index": index, "path": path, "skipped": job.excluded[j]})
                    progress(j + 1)
                    continue
                try:
                    w = _read_windows(path, job.contract, job.spec)
                except AudioError as e:
                    if job.strict:
                        raise
                    clips.append({"index": index, "path": path, "skipped": e.reason})
                else:
                    if w.ndim != 3 or w.shape[1:] != (T, M) or w.shape[0] < 1:
                        raise RuntimeError(f"{path}: windows of shape {w.shape}, expected (K, {T}, {M}) from "
                                           f"{job.spec} and the contract {job.contract}")
                    f.write(np.ascontiguousarray(w, dtype=DTYPE).tobytes())
                    clips.append({"index": index, "path": path, "offset": len(window_clip), "count": int(w.shape[0])})
                    window_clip += [index] * w.shape[0]
                progress(j + 1)
        n = len(window_clip)
        src = np.memmap(spill, dtype=DTYPE, mode="r", shape=(n, T, M)) if n else None
        with atomic_path(out / _shard_name(job.shard, "npy")) as tmp:
            dst = np.lib.format.open_memmap(tmp, mode="w+", dtype=DTYPE, shape=(n, T, M))
            for a in range(0, n, _COPY_ROWS):
                dst[a:a + _COPY_ROWS] = src[a:a + _COPY_ROWS]
            dst.flush()
            del dst, src
        write_json(out / _shard_name(job.shard, "json"), {
            "format": FORMAT, "format_version": FORMAT_VERSION, "fingerprint": job.fingerprint,
            "shard": job.shard, "n_windows": n, "window_shape": [T, M], "clips": clips, "window_clip": window_clip,
        })
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(spill)


_progress_slots = None  # per-shard clips done, shared with the parent (-1: not started); set in each worker


def _init_worker(slots) -> None:
    global _progress_slots
    _progress_slots = slots
    torch.set_num_threads(1)  # parallelism comes from the processes; threads on top only oversubscribe


def _pool_task(job: _ShardJob) -> int:
    slots = _progress_slots

    def progress(n: int) -> None:
        slots[job.shard] = n  # one writer per slot, so no lock a crashing worker could leave held

    progress(0)
    compute_shard(job, progress)
    return job.shard


# ----------------------------------------------------------------------------------------------------------
# build


def build_feature_cache(
    paths: list[str],
    out_dir: str | os.PathLike,
    contract: InputContract,
    policy: str | InputSpec = "acula",
    workers: int | None = None,
    shard_size: int = 1024,
    strict: bool = False,
    progress: bool = True,
    overwrite: bool = False,
) -> "FeatureCache":
    """Compute the log-mel windows of `paths` into `out_dir` (resuming a previous build there) and open it.

    Bad files (AudioError) are recorded as skipped, or raise with `strict=True`. A clip whose decoding kills
    its worker process is recorded as skipped with reason "worker crashed" (found by rerunning the shard alone);
    with `workers=0` everything runs in this process, which such a clip would take down with it.
    """
    paths = [os.fspath(p) for p in paths]
    if not paths:
        raise ValueError("build_feature_cache: no input paths")
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}")
    workers = (os.cpu_count() or 1) if workers is None else int(workers)
    if workers < 0:
        raise ValueError(f"workers must be >= 0 (0 = in this process), got {workers}")
    spec = cache_spec(contract, policy)
    settings, fp = spec.settings(contract), spec.fingerprint(contract)
    probe = logmel(np.zeros(settings["window_samples"], np.float32), contract.sample_rate)
    T, M = probe.shape[1:]
    if M != contract.n_mels:
        raise ValueError(f"the log-mel front end gives {M} mel bands but the encoder contract asks for "
                         f"{contract.n_mels}")
    contract.check(probe, "feature cache")  # every window has this shape: refuse now, not once per clip
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    n_shards = math.ceil(len(paths) / shard_size)
    meta = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "fingerprint": fp, "settings": settings,
        "window_shape": [int(T), int(M)], "dtype": DTYPE.str, "n_inputs": len(paths), "shard_size": shard_size,
        "n_shards": n_shards, "paths_sha256": sha256_text(json.dumps(paths)), "complete": False,
    }
    with _locked(out):
        _prepare(out, meta, overwrite)
        shard_paths = [paths[s * shard_size:(s + 1) * shard_size] for s in range(n_shards)]
        missing = [s for s in range(n_shards) if not _shard_complete(out, s, shard_paths[s], meta)]
        jobs = {s: _ShardJob(str(out), s, s * shard_size, shard_paths[s], contract, spec, (int(T), int(M)), fp,
                             strict) for s in missing}
        done_clips = len(paths) - sum(len(j.paths) for j in jobs.values())
        with tqdm(total=len(paths), initial=done_clips, desc="log-mel cache", unit="clip",
                  disable=not progress) as bar:
            if workers == 0:
                with _torch_threads(1):
                    for s in missing:
                        before = bar.n
                        compute_shard(jobs[s], lambda n: bar.update(before + n - bar.n))
            else:
                _run_guarded(jobs, missing, workers, bar, done_clips)
        cache = _finish(out, meta)
    if strict and cache.skipped:
        path, reason = cache.skipped[0]
        raise AudioError(path, f"{reason} (recorded as skipped in {out}; strict=True accepts no skipped file)")
    return cache


@contextlib.contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    """One clip's STFT is too small to gain from intra-op threads, and on a busy machine they cost a lot
    (measured: 87 clips/s with one thread, 7 with two, on a loaded 2-core box)."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def _locked(out: Path) -> Iterator[None]:
    """One build per folder at a time, so clearing stale temporary files cannot hit a live build's."""
    with open(out / ".lock", "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RuntimeError(f"{out}: another build_feature_cache is writing to this folder") from None
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _prepare(out: Path, meta: dict, overwrite: bool) -> None:
    """Refuse a folder holding something else; clear what a killed build left half-written."""
    own = [p for p in out.iterdir() if _is_own_file(p.name)]
    if overwrite:
        for p in own:
            p.unlink()
        own = []
    meta_path = out / "meta.json"
    if meta_path.exists():
        old = json.loads(meta_path.read_text(encoding="utf-8"))
        _check_compatible(out, old, meta)
    else:
        others = [p.name for p in out.iterdir() if p.name != ".lock" and not _is_own_file(p.name)]
        if others:
            raise FileExistsError(f"{out} is not empty and holds no feature cache (e.g. {sorted(others)[0]}); "
                                  f"choose an empty or new folder")
        if any(not p.name.startswith(".") for p in own):
            raise FileExistsError(f"{out} has shard files but no meta.json; pass overwrite=True to rebuild")
        write_json(meta_path, meta)
    for p in out.iterdir():
        if p.name.startswith(".") and p.name.endswith(".tmp") and _is_own_file(p.name):
            p.unlink()


def _check_compatible(out: Path, old: dict, new: dict) -> None:
    if old.get("format") != FORMAT or old.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{out}/meta.json: not a {FORMAT} version {FORMAT_VERSION} (found "
                         f"{old.get('format')!r} version {old.get('format_version')!r}); "
                         f"pass overwrite=True to rebuild")
    if old.get("fingerprint") != new["fingerprint"]:
        a, b = old.get("settings", {}), new["settings"]
        diff = ", ".join(f"{k}: {a.get(k)!r} cached vs {b.get(k)!r} requested"
                         for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k))
        raise ValueError(f"{out} holds features built with different preprocessing: cache fingerprint "
                         f"{old.get('fingerprint')}, requested {new['fingerprint']} ({diff or 'settings differ'}). "
                         f"Use another folder, or pass overwrite=True to rebuild it")
    for key, what in (("paths_sha256", "list of input files"), ("shard_size", "shard_size")):
        if old.get(key) != new[key]:
            raise ValueError(f"{out} was built from a different {what} ({key} {old.get(key)!r}, now {new[key]!r}; "
                             f"{old.get('n_inputs')} inputs then, {new['n_inputs']} now). Use another folder, or "
                             f"pass overwrite=True to rebuild it")


def _shard_complete(out: Path, s: int, paths: list[str], meta: dict) -> bool:
    """A shard counts only if its JSON and NPY both exist and agree; anything else is deleted and recomputed."""
    npy, js = out / _shard_name(s, "npy"), out / _shard_name(s, "json")
    if not js.exists():
        return False
    try:
        info = json.loads(js.read_text(encoding="utf-8"))
        T, M = meta["window_shape"]
        n = info["n_windows"]
        shape, dtype, offset = _npy_shape(npy)
        ok = (info["fingerprint"] == meta["fingerprint"] and info["shard"] == s
              and [c["path"] for c in info["clips"]] == paths and len(info["window_clip"]) == n
              and sum(c.get("count", 0) for c in info["clips"]) == n
              and shape == (n, T, M) and dtype == DTYPE and npy.stat().st_size == offset + n * T * M * DTYPE.itemsize)
    except (OSError, ValueError, KeyError, TypeError):
        ok = False
    if not ok:
        for p in (js, npy):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
    return ok


def _has_json(job: _ShardJob) -> bool:
    return (Path(job.out_dir) / _shard_name(job.shard, "json")).exists()


def _run_guarded(jobs: dict[int, _ShardJob], shards: list[int], workers: int, bar, done_clips: int) -> None:
    """Run shards in worker processes. When a worker dies, rerun the shards that were in flight in a one-process
    pool: there a crash has a single suspect, and the shard's progress counter names the clip that killed the
    worker, which is recorded as skipped before the shard is rerun without it."""
    while shards := [s for s in shards if not _has_json(jobs[s])]:
        inflight = _run_pool(jobs, shards, workers, bar, done_clips)
        if inflight is None:
            return
        if not inflight:
            raise RuntimeError("feature cache: the worker processes died before starting any shard. With the "
                               "spawn start method a script must call build_feature_cache under "
                               "`if __name__ == '__main__':`; or pass workers=0 to compute in this process")
        if workers > 1:
            _run_guarded(jobs, [s for s, _ in inflight], 1, bar, done_clips)
            continue
        (s, pos), = inflight
        job = jobs[s]
        if pos >= len(job.paths) or pos in job.excluded:
            raise RuntimeError(f"worker process died while writing shard {s} of {job.out_dir} "
                               f"(after {pos} of {len(job.paths)} clips); not caused by one input file")
        bar.write(f"feature cache: a worker died decoding {job.paths[pos]}; skipping it ({WORKER_CRASHED})",
                  file=sys.stderr)
        job.excluded[pos] = WORKER_CRASHED


def _run_pool(jobs: dict[int, _ShardJob], shards: list[int], workers: int, bar,
              done_clips: int) -> list[tuple[int, int]] | None:
    """Run `shards` in a fresh process pool; None when all finished, else [(shard, clips done)] of those
    that had started but not finished when the pool broke."""
    ctx = mp.get_context("spawn")  # fork would copy torch's thread pools and locks into the workers
    slots = ctx.RawArray("q", max(jobs) + 1)
    for s in shards:
        slots[s] = -1
    counted = done_clips + sum(len(jobs[s].paths) for s in jobs if s not in shards and _has_json(jobs[s]))
    with cf.ProcessPoolExecutor(min(workers, len(shards)), mp_context=ctx, initializer=_init_worker,
                                initargs=(slots,)) as pool:
        try:
            pending = {pool.submit(_pool_task, jobs[s]) for s in shards}
            while pending:
                finished, pending = cf.wait(pending, timeout=0.2, return_when=cf.FIRST_COMPLETED)
                for fut in finished:
                    fut.result()  # re-raises a worker's exception (strict AudioError, bugs)
                if (n := counted + sum(max(0, slots[s]) for s in shards)) != bar.n:
                    bar.update(n - bar.n)
        except BrokenProcessPool:
            return [(s, slots[s]) for s in shards if slots[s] >= 0 and not _has_json(jobs[s])]
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    return None


def _finish(out: Path, meta: dict) -> "FeatureCache":
    n_kept = n_windows = n_skipped = 0
    for s in range(meta["n_shards"]):
        info = json.loads((out / _shard_name(s, "json")).read_text(encoding="utf-8"))
        n_windows += info["n_windows"]
        n_skipped += sum("skipped" in c for c in info["clips"])
        n_kept += sum("skipped" not in c for c in info["clips"])
    final = dict(meta, complete=True, n_clips=n_kept, n_windows=n_windows, n_skipped=n_skipped)
    meta_path = out / "meta.json"
    if json.loads(meta_path.read_text(encoding="utf-8")) != final:
        write_json(meta_path, final)
    return FeatureCache(out, expected_fingerprint=meta["fingerprint"])


# ----------------------------------------------------------------------------------------------------------
# read


class FeatureCache:
    """A finished cache. Clip `i` is the i-th kept input (skipped inputs have no index); `kept_indices[i]` is its
    position in the list the cache was built from, to line up manifest rows or text embeddings."""

    def __init__(self, out_dir: str | os.PathLike, expected_fingerprint: str | None = None):
        self.dir = Path(out_dir)
        meta_path = self.dir / "meta.json"
        if not meta_path.is_file():
            raise FileNotFoundError(f"{self.dir}: no feature cache here (meta.json missing)")
        self.meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if self.meta.get("format") != FORMAT or self.meta.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{meta_path}: not a {FORMAT} version {FORMAT_VERSION}")
        if expected_fingerprint is not None and self.meta["fingerprint"] != expected_fingerprint:
            raise ValueError(f"{self.dir}: cache fingerprint {self.meta['fingerprint']} does not match the expected "
                             f"{expected_fingerprint}; it was built with settings {self.meta['settings']}")
        have = sum((self.dir / _shard_name(s, "json")).exists() for s in range(self.meta["n_shards"]))
        if not self.meta.get("complete") or have < self.meta["n_shards"]:
            raise ValueError(f"{self.dir}: incomplete build ({have} of {self.meta['n_shards']} shards); rerun "
                             f"build_feature_cache with the same inputs to finish it")
        self.fingerprint: str = self.meta["fingerprint"]
        self.window_shape: tuple[int, int] = tuple(self.meta["window_shape"])
        self.paths: list[str] = []
        self.skipped: list[tuple[str, str]] = []
        self.skipped_indices: list[int] = []  # input positions of the skipped clips
        kept, first, count, shard_start = [], [], [], [0]
        for s in range(self.meta["n_shards"]):
            info = json.loads((self.dir / _shard_name(s, "json")).read_text(encoding="utf-8"))
            for c in info["clips"]:
                if "skipped" in c:
                    self.skipped.append((c["path"], c["skipped"]))
                    self.skipped_indices.append(c["index"])
                else:
                    self.paths.append(c["path"])
                    kept.append(c["index"])
                    first.append(shard_start[-1] + c["offset"])
                    count.append(c["count"])
            shard_start.append(shard_start[-1] + info["n_windows"])
        self.kept_indices = np.asarray(kept, dtype=np.int64)
        self._first = np.asarray(first, dtype=np.int64)  # global window id of each clip's first window
        self._count = np.asarray(count, dtype=np.int64)
        self._shard_start = np.asarray(shard_start, dtype=np.int64)
        self.n_windows = int(self._shard_start[-1])
        self._open: collections.OrderedDict[int, np.memmap] = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self.paths)

    def __repr__(self) -> str:
        return (f"FeatureCache({str(self.dir)!r}, clips={len(self)}, windows={self.n_windows}, "
                f"skipped={len(self.skipped)}, window_shape={self.window_shape}, fingerprint={self.fingerprint})")

    def __getstate__(self) -> dict:  # picklable for DataLoader workers: memmaps are reopened on demand
        return dict(self.__dict__, _open=collections.OrderedDict())

    def _load_shard(self, s: int) -> np.memmap:
        path = self.dir / _shard_name(s, "npy")
        T, M = self.window_shape
        mm = np.load(path, mmap_mode="r")
        n = int(self._shard_start[s + 1] - self._shard_start[s])
        if mm.shape != (n, T, M) or mm.dtype != DTYPE:
            raise ValueError(f"{path}: holds {mm.dtype} {mm.shape}, its JSON says float32 {(n, T, M)}; rebuild "
                             f"the cache (build_feature_cache with overwrite=True)")
        return mm

    def _shard(self, s: int) -> np.memmap:
        mm = self._open.pop(s, None)
        if mm is None:
            mm = self._load_shard(s)
            if len(self._open) >= _MAX_OPEN_SHARDS:
                self._open.popitem(last=False)
        self._open[s] = mm
        return mm

    def read_windows(self, ids: np.ndarray) -> np.ndarray:
        """Windows by global window id (storage order), reading only those rows of each shard."""
        ids = np.asarray(ids, dtype=np.int64)
        if ids.size and (ids.min() < 0 or ids.max() >= self.n_windows):
            raise IndexError(f"window ids must lie in [0, {self.n_windows}), got {ids.min()}..{ids.max()}")
        out = np.empty((ids.size, *self.window_shape), dtype=DTYPE)
        shard = np.searchsorted(self._shard_start, ids, side="right") - 1
        for s in np.unique(shard):
            at = np.flatnonzero(shard == s)
            local = ids[at] - self._shard_start[s]
            order = np.argsort(local, kind="stable")  # sorted reads walk the file forwards
            out[at[order]] = self._shard(int(s))[local[order]]
        return out

    def clip_windows(self, i: int) -> np.ndarray:
        """(K, T, M) windows of kept clip `i`."""
        i = _check_index(i, len(self), "clip")
        return self.read_windows(np.arange(self._first[i], self._first[i] + self._count[i]))

    def window_counts(self) -> np.ndarray:
        return self._count.copy()

    def first_windows(self) -> "WindowView":
        """(N, T, M) array-like of each kept clip's first window (the AcuLa training input)."""
        return WindowView(self, self._first)

    def windows(self) -> "WindowView":
        """(n_windows, T, M) array-like of every window; `window_clips()` names each one's clip."""
        return WindowView(self, np.arange(self.n_windows, dtype=np.int64))

    def window_clips(self) -> np.ndarray:
        return np.repeat(np.arange(len(self), dtype=np.int64), self._count)

    def iter_batches(self, batch_size: int = 64) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield (clip indices (B,), windows (B, T, M)) over every window in storage order.

        Each shard is mapped only while it is read, so the resident memory is a batch and one mapping, however
        large the corpus.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        xs, cs, n = [], [], 0
        first_clip = 0
        for s in range(len(self._shard_start) - 1):
            size = int(self._shard_start[s + 1] - self._shard_start[s])
            if size == 0:
                continue
            n_clips = int(np.searchsorted(self._first, self._shard_start[s + 1]) - first_clip)
            clips = np.arange(first_clip, first_clip + n_clips)
            owners = np.repeat(clips, self._count[clips])
            first_clip += n_clips
            mm = self._load_shard(s)
            pos = 0
            while pos < size:
                take = min(batch_size - n, size - pos)
                xs.append(np.array(mm[pos:pos + take]))
                cs.append(owners[pos:pos + take])
                n, pos = n + take, pos + take
                if n == batch_size:
                    yield _cat(cs), _cat(xs)
                    xs, cs, n = [], [], 0
            del mm
        if n:
            yield _cat(cs), _cat(xs)


def _cat(parts: list[np.ndarray]) -> np.ndarray:
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _check_index(i, n: int, what: str) -> int:
    if not isinstance(i, (int, np.integer)) or isinstance(i, bool):
        raise TypeError(f"{what} index must be an integer, got {type(i).__name__}")
    j = int(i) + n if i < 0 else int(i)
    if not 0 <= j < n:
        raise IndexError(f"{what} index {int(i)} out of range for {n} {what}s")
    return j


class WindowView:
    """Array-like (N, T, M) over cached windows: integer, slice and integer-array indexing read only the
    requested rows. `AlignmentData(cache.first_windows(), text_emb)` trains without loading the corpus."""

    def __init__(self, cache: FeatureCache, ids: np.ndarray):
        self.cache, self._ids = cache, ids
        self.dtype = DTYPE
        self.shape = (len(ids), *cache.window_shape)
        self.ndim = 3

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return f"WindowView(shape={self.shape}, dtype={self.dtype}, cache={str(self.cache.dir)!r})"

    def __getitem__(self, key):
        if isinstance(key, tuple):  # rows first, then the rest on the (..., T, M) result
            rows = self[key[0]]
            return rows[(slice(None),) * (rows.ndim - 2) + key[1:]]
        n = len(self)
        if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
            return self.cache.read_windows(self._ids[[_check_index(key, n, "row")]])[0]
        if isinstance(key, slice):
            return self.cache.read_windows(self._ids[key])
        idx = np.asarray(key)
        if idx.dtype == bool:
            if idx.shape != (n,):
                raise IndexError(f"boolean index of shape {idx.shape} for {n} rows")
            idx = np.flatnonzero(idx)
        if idx.size and not np.issubdtype(idx.dtype, np.integer):
            raise IndexError(f"rows must be indexed by integers, slices or booleans, got {idx.dtype}")
        idx = idx.astype(np.int64)
        bad = (idx < -n) | (idx >= n)
        if bad.any():
            raise IndexError(f"row index {int(idx[bad][0])} out of range for {n} rows")
        flat = np.where(idx < 0, idx + n, idx).ravel()
        return self.cache.read_windows(self._ids[flat]).reshape(*idx.shape, *self.shape[1:])
