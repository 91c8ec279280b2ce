"""Feature cache: same numbers as extraction, skips, resume after SIGKILL, worker crashes, flat reading memory."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from acula.align.trainer import AlignmentData
from acula.audio import AudioError
from acula.data import features
from acula.data.features import FeatureCache, build_feature_cache, cache_fingerprint
from acula.encoders.base import InputContract
from acula.features import InputSpec, read_inputs
from numerics import assert_close, encoder_tol

ACULA = InputContract()
SHORT = InputContract(window_seconds=1.0)  # 32-frame windows: cheap log-mels for the bulk tests


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """The machine is shared; one torch thread per process is several times faster under load."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _wav(path: Path, seconds: float, seed: int, sr: int = 16000) -> str:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    x = 0.3 * np.sin(2 * np.pi * (200 + 50 * seed) * t) + 0.05 * rng.standard_normal(t.size)
    sf.write(path, x.astype(np.float32), sr)
    return str(path)


@pytest.fixture(scope="module")
def audio(tmp_path_factory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("audio")
    files = {f"ok{i}": _wav(d / f"ok{i}.wav", 1.0 + 0.25 * i, seed=i, sr=(16000, 8000, 22050)[i % 3]) for i in range(4)}
    files["long"] = _wav(d / "long.wav", 20.0, seed=9)
    files["silent"] = str(d / "silent.wav")
    sf.write(files["silent"], np.zeros(8000, np.float32), 16000)
    files["missing"] = str(d / "missing.wav")
    return files


def _files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if not p.name.startswith(".")}


def _expected(path: str, contract: InputContract, policy: str) -> np.ndarray:
    return read_inputs(path, contract, InputSpec.of(contract, policy)).numpy()


def test_cache_holds_what_extraction_computes_and_records_skips(tmp_path, audio):
    paths = [audio["ok0"], audio["silent"], audio["ok1"], audio["missing"], audio["ok2"], audio["ok3"], audio["ok0"]]
    cache = build_feature_cache(paths, tmp_path / "c", ACULA, workers=0, shard_size=3, progress=False)
    assert len(cache) == 5 and cache.n_windows == 5
    assert cache.paths == [paths[i] for i in (0, 2, 4, 5, 6)]
    assert cache.kept_indices.tolist() == [0, 2, 4, 5, 6]
    assert [p for p, _ in cache.skipped] == [audio["silent"], audio["missing"]]
    assert "no signal" in cache.skipped[0][1] and "file not found" in cache.skipped[1][1]
    for i, p in enumerate(cache.paths):
        w = cache.clip_windows(i)
        assert w.shape == (1, 256, 64) and w.dtype == np.float32
        np.testing.assert_array_equal(w, _expected(p, ACULA, "acula"))
    meta = json.loads((tmp_path / "c" / "meta.json").read_text())
    assert meta["fingerprint"] == cache_fingerprint(ACULA, "acula") == cache.fingerprint
    assert (meta["n_shards"], meta["n_clips"], meta["n_skipped"], meta["complete"]) == (3, 5, 2, True)
    shard1 = json.loads((tmp_path / "c" / "shard-00001.json").read_text())
    assert shard1["window_clip"] == [4, 5] and shard1["clips"][0]["skipped"].startswith("file not found")
    assert np.load(tmp_path / "c" / "shard-00001.npy").shape == (2, 256, 64)
    with pytest.raises(IndexError, match="clip index 5 out of range for 5 clips"):
        cache.clip_windows(5)


def test_opera_policy_stores_every_window_and_batches_cross_shards(tmp_path, audio):
    paths = [audio["ok1"], audio["long"], audio["ok2"], audio["long"], audio["ok3"]]
    cache = build_feature_cache(paths, tmp_path / "c", ACULA, policy="opera", workers=0, shard_size=2,
                                progress=False)
    expected = [_expected(p, ACULA, "opera") for p in paths]
    counts = [len(e) for e in expected]
    assert counts[1] >= 3 and cache.window_counts().tolist() == counts
    for i, e in enumerate(expected):
        np.testing.assert_array_equal(cache.clip_windows(i), e)
    np.testing.assert_array_equal(cache.first_windows()[:], np.stack([e[0] for e in expected]))
    clips, xs = zip(*cache.iter_batches(batch_size=3))
    assert [len(c) for c in clips[:-1]] == [3] * (len(clips) - 1)  # full batches even across shard ends
    np.testing.assert_array_equal(np.concatenate(clips), np.repeat(np.arange(5), counts))
    np.testing.assert_array_equal(np.concatenate(xs), np.concatenate(expected))
    np.testing.assert_array_equal(cache.windows()[np.arange(cache.n_windows)], np.concatenate(expected))


def test_first_windows_index_like_an_array_and_feed_alignment_data(tmp_path, audio):
    paths = [audio[f"ok{i % 4}"] for i in range(11)]
    cache = build_feature_cache(paths, tmp_path / "c", SHORT, workers=0, shard_size=4, progress=False)
    view = cache.first_windows()
    dense = np.stack([cache.clip_windows(i)[0] for i in range(len(cache))])
    assert len(view) == 11 and view.shape == (11, 32, 64) and view.dtype == np.float32
    idx = np.array([10, 0, 5, 5, 3, 8])  # unsorted, repeated, spread over three shards
    np.testing.assert_array_equal(view[idx], dense[idx])
    np.testing.assert_array_equal(view[idx.reshape(2, 3)], dense[idx.reshape(2, 3)])
    np.testing.assert_array_equal(view[-1], dense[-1])
    np.testing.assert_array_equal(view[2:9:3], dense[2:9:3])
    np.testing.assert_array_equal(view[dense[:, 0, 0] > 0.5], dense[dense[:, 0, 0] > 0.5])
    np.testing.assert_array_equal(view[idx, 3:5], dense[idx, 3:5])
    assert view[np.array([], dtype=int)].shape == (0, 32, 64)
    with pytest.raises(IndexError, match="row index 11 out of range for 11 rows"):
        view[np.array([1, 11])]
    text = np.random.default_rng(0).normal(size=(11, 5)).astype(np.float32)
    x, t = AlignmentData(view, text).batch(idx)
    np.testing.assert_array_equal(x.numpy(), dense[idx])
    np.testing.assert_array_equal(t.numpy(), text[idx])


def test_strict_raises_on_the_first_bad_file(tmp_path, audio):
    paths = [audio["ok0"], audio["silent"], audio["ok1"]]
    with pytest.raises(AudioError, match="silent.wav: no signal"):
        build_feature_cache(paths, tmp_path / "a", ACULA, workers=0, strict=True, progress=False)
    build_feature_cache(paths, tmp_path / "b", ACULA, workers=0, progress=False)
    with pytest.raises(AudioError, match="silent.wav: no signal.*recorded as skipped"):
        build_feature_cache(paths, tmp_path / "b", ACULA, workers=0, strict=True, progress=False)


def test_other_settings_are_refused_naming_both_fingerprints(tmp_path, audio):
    out, paths = tmp_path / "c", [audio["ok0"], audio["ok1"]]
    build_feature_cache(paths, out, ACULA, workers=0, progress=False)
    before = _files(out)
    acula_fp, opera_fp = cache_fingerprint(ACULA, "acula"), cache_fingerprint(ACULA, "opera")
    assert acula_fp != opera_fp
    with pytest.raises(ValueError, match=f"cache fingerprint {acula_fp}, requested {opera_fp}.*policy: 'acula' "
                                         f"cached vs 'opera' requested.*overwrite=True"):
        build_feature_cache(paths, out, ACULA, policy="opera", workers=0, progress=False)
    with pytest.raises(ValueError, match="different list of input files"):
        build_feature_cache(paths[::-1], out, ACULA, workers=0, progress=False)
    with pytest.raises(ValueError, match=f"fingerprint {acula_fp} does not match the expected {opera_fp}"):
        FeatureCache(out, expected_fingerprint=opera_fp)
    assert _files(out) == before  # refused means untouched
    cache = build_feature_cache(paths, out, ACULA, policy="opera", workers=0, progress=False, overwrite=True)
    assert cache.fingerprint == opera_fp and FeatureCache(out, expected_fingerprint=opera_fp).meta["settings"][
        "policy"] == "opera"


@pytest.mark.parametrize("bad, message", [
    (dict(contract=InputContract(frontend="waveform")), "stores log-mel windows"),
    (dict(policy="whole"), "unknown window policy 'whole'"),
    (dict(contract=InputContract(n_mels=128)), "gives 64 mel bands but the encoder contract asks for 128"),
    (dict(contract=InputContract(max_frames=100)), "accepts at most 100 frames, got 256"),
    (dict(paths=[]), "no input paths"),
    (dict(shard_size=0), "shard_size must be >= 1"),
])
def test_bad_arguments_are_named(tmp_path, audio, bad, message):
    args = dict(paths=[audio["ok0"]], out_dir=tmp_path / "c", contract=ACULA, workers=0, progress=False) | bad
    with pytest.raises(ValueError, match=message):
        build_feature_cache(**args)


def test_a_folder_with_other_files_or_a_live_build_is_refused(tmp_path, audio):
    (tmp_path / "mine.txt").write_text("not a cache")
    with pytest.raises(FileExistsError, match="holds no feature cache .*mine.txt"):
        build_feature_cache([audio["ok0"]], tmp_path, ACULA, workers=0, progress=False)
    out = tmp_path / "c"
    out.mkdir()
    with open(out / ".lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        with pytest.raises(RuntimeError, match="another build_feature_cache is writing"):
            build_feature_cache([audio["ok0"]], out, ACULA, workers=0, progress=False)


def test_finished_shards_are_trusted_and_damaged_ones_recomputed(tmp_path, audio, monkeypatch):
    paths = [audio[f"ok{i % 4}"] for i in range(7)]
    fresh = _files(build_feature_cache(paths, tmp_path / "fresh", SHORT, workers=0, shard_size=2,
                                       progress=False).dir)
    out = tmp_path / "c"
    build_feature_cache(paths, out, SHORT, workers=0, shard_size=2, progress=False)
    (out / "shard-00001.json").unlink()  # NPY without JSON: an interrupted shard
    npy = out / "shard-00002.npy"
    npy.write_bytes(npy.read_bytes()[:-100])  # truncated data: sizes disagree
    (out / ".shard-00003.npy.x1y2.tmp").write_bytes(b"left by a killed build")
    calls = []
    real = features._read_windows
    monkeypatch.setattr(features, "_read_windows", lambda p, c, pol: calls.append(p) or real(p, c, pol))
    with pytest.raises(ValueError, match="incomplete build"):
        FeatureCache(out)
    build_feature_cache(paths, out, SHORT, workers=0, shard_size=2, progress=False)
    assert len(calls) == 4  # shards 1 and 2 only
    assert _files(out) == fresh and not list(out.glob(".*.tmp"))
    calls.clear()
    build_feature_cache(paths, out, SHORT, workers=0, shard_size=2, progress=False)
    assert calls == []


_SLOW_BUILD = """
import sys, time
import acula.audio.io
from acula.data.features import build_feature_cache
from acula.encoders.base import InputContract
load = acula.audio.io.load_audio
def slow(*a, **k):
    time.sleep(0.05)
    return load(*a, **k)
acula.audio.io.load_audio = slow
paths = sys.argv[2:]
build_feature_cache(paths, sys.argv[1], InputContract(window_seconds=1.0), workers=0, shard_size=2, progress=False)
"""


def test_resume_after_sigkill_is_byte_identical(tmp_path, audio):
    paths = [audio[f"ok{i % 4}"] for i in range(30)] + [audio["silent"]]
    out = tmp_path / "killed"
    script = tmp_path / "build.py"
    script.write_text(_SLOW_BUILD)
    proc = subprocess.Popen([sys.executable, str(script), str(out), *paths])
    try:
        deadline = time.monotonic() + 60
        while not (out / "shard-00002.json").exists():
            assert proc.poll() is None, "the build ended before it could be killed"
            assert time.monotonic() < deadline, "the build wrote no shard within 60 s"
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    done = len(list(out.glob("shard-*.json")))
    assert 3 <= done < 16
    with pytest.raises(ValueError, match=f"incomplete build \\({done} of 16 shards\\)"):
        FeatureCache(out)
    resumed = build_feature_cache(paths, out, SHORT, workers=0, shard_size=2, progress=False)
    fresh = build_feature_cache(paths, tmp_path / "fresh", SHORT, workers=0, shard_size=2, progress=False)
    assert _files(out) == _files(fresh.dir) and len(_files(out)) == 33
    assert len(resumed) == 30 and not list(out.glob(".*.tmp"))


_CRASH_HOOK = """
import os, pathlib, time
crash, flag = os.environ.get("ACULA_TEST_CRASH_MARK"), os.environ.get("ACULA_TEST_CRASH_FLAG")
if crash:  # a decoder that takes its process down, as a segfault in libsndfile would
    import soundfile
    _init = soundfile.SoundFile.__init__
    def __init__(self, file, *args, **kwargs):
        name = os.fspath(file)
        if crash in name:  # only once the other shard is in flight, so the pool breaks with both started
            deadline = time.monotonic() + 60
            while not os.path.exists(flag + ".waited") and time.monotonic() < deadline:
                time.sleep(0.01)
            pathlib.Path(flag).touch()
            os._exit(3)
        if "wait-for-crash" in name and not os.path.exists(flag + ".waited"):
            pathlib.Path(flag + ".waited").touch()  # the first time only: keep this shard in flight
            deadline = time.monotonic() + 30  # until the crash, and then until the pool kills this worker
            while not os.path.exists(flag) and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(2)
        _init(self, file, *args, **kwargs)
    soundfile.SoundFile.__init__ = __init__
"""


def test_a_clip_that_kills_its_worker_is_skipped_and_the_build_goes_on(tmp_path, audio, monkeypatch):
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(_CRASH_HOOK)  # runs at start-up of every worker process
    crash = _wav(tmp_path / "crash-me.wav", 1.0, seed=5)
    waits = _wav(tmp_path / "wait-for-crash.wav", 1.0, seed=6)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(hook), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("ACULA_TEST_CRASH_MARK", "crash-me")
    monkeypatch.setenv("ACULA_TEST_CRASH_FLAG", str(tmp_path / "crashed"))
    pools = []
    run_pool = features._run_pool
    monkeypatch.setattr(features, "_run_pool", lambda jobs, shards, n, *a: pools.append((list(shards), n))
                        or run_pool(jobs, shards, n, *a))
    paths = [waits, audio["silent"], audio["ok1"], audio["ok2"], crash]
    cache = build_feature_cache(paths, tmp_path / "c", SHORT, workers=2, shard_size=3, progress=False)
    # The shards in flight when a worker died were rerun in one-process pools to find the clip. Whether shard 0
    # was still in flight depends on how soon the executor stops the other worker (not promptly on every run).
    assert pools[0] == ([0, 1], 2) and pools[-1] == ([1], 1)
    assert pools[1:-1] in ([([0, 1], 1)], [([1], 1)])
    assert cache.skipped[0][0] == audio["silent"] and cache.skipped[1] == (crash, features.WORKER_CRASHED)
    assert cache.paths == [waits, audio["ok1"], audio["ok2"]]
    for i, p in enumerate(cache.paths):
        np.testing.assert_array_equal(cache.clip_windows(i), _expected(p, SHORT, "acula"))
    assert _expected(crash, SHORT, "acula").shape == (1, 32, 64)  # a good file: only the hook made it fail
    shard1 = json.loads((tmp_path / "c" / "shard-00001.json").read_text())
    assert shard1["clips"][1] == {"index": 4, "path": crash, "skipped": "worker crashed"}


def _reading_peak(cache: FeatureCache, batch_size: int) -> tuple[int, int]:
    tracemalloc.start()
    try:
        n = 0
        for clips, x in cache.iter_batches(batch_size):
            n += len(clips)
            assert x.shape[0] == len(clips)
        return tracemalloc.get_traced_memory()[1], n
    finally:
        tracemalloc.stop()


def test_reading_memory_does_not_grow_with_the_corpus(tmp_path, audio):
    small, large = 100, 400
    caches = {n: build_feature_cache([audio[f"ok{i % 4}"] for i in range(n)], tmp_path / str(n), SHORT, workers=0,
                                     shard_size=32, progress=False) for n in (small, large)}
    peaks = {}
    for n, cache in caches.items():
        peaks[n], seen = _reading_peak(cache, batch_size=16)
        assert seen == n
    batch_bytes = 16 * 32 * 64 * 4
    large_bytes = large * 32 * 64 * 4
    assert peaks[large] < 1.5 * peaks[small] + 64 * 1024, peaks
    assert peaks[large] < 4 * batch_bytes + 256 * 1024 < large_bytes / 2, (peaks, batch_bytes, large_bytes)
    tracemalloc.start()  # random access through the view reads just the rows asked for
    caches[large].first_windows()[np.arange(0, large, 25)]
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 4 * batch_bytes + 256 * 1024


@pytest.mark.numerics
@pytest.mark.parametrize("policy", ["acula", "opera"])
def test_embed_reads_the_cache_and_matches_direct_extraction(tmp_path, audio, policy):
    """`acula embed --feature-cache` decodes once and gives the embeddings of the direct path (to rounding),
    with the same skips in the same order; a second encoder reuses the cache without decoding."""
    from acula.cli import main
    from acula.encoders import create
    from acula.encoders.checkpoint import save_encoder

    weights = tmp_path / "tiny.safetensors"  # the same weights for every call
    save_encoder(create("opera-gt", preset="tiny"), weights)
    paths = [audio[k] for k in ("ok0", "silent", "ok1", "long", "missing", "ok2")]
    enc = ["--encoder", "opera-gt", "--preset", "tiny", "--checkpoint", str(weights), "--policy", policy,
           "--batch-size", "3"]
    assert main(["embed", *paths, *enc, "--out", str(tmp_path / "direct.npz")]) == 0
    cache = tmp_path / "cache"
    assert main(["embed", *paths, *enc, "--feature-cache", str(cache), "--out", str(tmp_path / "cached.npz")]) == 0
    with np.load(tmp_path / "direct.npz") as a, np.load(tmp_path / "cached.npz") as b:
        assert list(a["paths"]) == list(b["paths"]) and len(a["paths"]) == 4
        assert list(a["skipped_paths"]) == list(b["skipped_paths"]) == [audio["silent"], audio["missing"]]
        assert list(a["skipped_reasons"]) == list(b["skipped_reasons"])
        # the same weights; the cache builder's log-mel (its own batches) and the encoder's batches may round otherwise
        tol = encoder_tol(create("opera-gt", preset="tiny"), a["embeddings"], front_end=True)
        assert_close(a["embeddings"], b["embeddings"], tol, f"{policy}: cached vs direct")
    stamp = {p.name: p.stat().st_mtime_ns for p in cache.iterdir()}
    assert main(["embed", *paths, *enc, "--feature-cache", str(cache), "--out", str(tmp_path / "again.npz")]) == 0
    assert {p.name: p.stat().st_mtime_ns for p in cache.iterdir()} == stamp  # read, not rebuilt


def test_embed_feature_cache_refuses_waveform_encoders(tmp_path, audio, capsys):
    from acula.cli import main

    rc = main(["embed", audio["ok0"], "--encoder", "yamnet", "--preset", "tiny", "--feature-cache",
               str(tmp_path / "c"), "--out", str(tmp_path / "e.npz")])
    assert rc == 2 and "reads its audio directly" in capsys.readouterr().err
