"""Embedding cache: each unique report is encoded once; shards are resumable, concurrent and verified."""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import time
from pathlib import Path

import numpy as np
import pytest

from acula._io import sha256_text
from acula.text.cache import EmbeddingCache, embed_texts, embed_texts_with_stats
from numerics import assert_close, net_shape, reorder_tol, scale_of

REPORTS = [f"Recording {i}: {'a systolic murmur' if i % 3 else 'normal heart sounds'} at site {i % 5}."
           for i in range(10)]


class FakeTeacher:
    """Deterministic numpy 'LM' (no torch): lets worker processes start fast and count calls."""

    def __init__(self, hidden_size: int = 6, name: str = "fake", fail_on_call: int | None = None, delay: float = 0.0):
        self.hidden_size, self.name = hidden_size, name
        self.key = json.dumps({"model": name, "hidden": hidden_size})
        self.calls: list[list[str]] = []
        self.fail_on_call, self.delay = fail_on_call, delay

    def encode(self, texts):
        self.calls.append(list(texts))
        if self.fail_on_call is not None and len(self.calls) == self.fail_on_call:
            raise KeyboardInterrupt("simulated crash")
        time.sleep(self.delay)
        return np.stack([fake_embedding(t, self.hidden_size) for t in texts])


def fake_embedding(text: str, width: int) -> np.ndarray:
    seed = int(sha256_text(text)[:8], 16)
    return np.random.default_rng(seed).standard_normal(width).astype(np.float32)


def expected(texts, width=6) -> np.ndarray:
    return np.stack([fake_embedding(t, width) for t in texts])


def shards(cache_dir: Path) -> list[Path]:
    return sorted(cache_dir.glob("*/*.safetensors"))


# ---------------------------------------------------------------------------------------- real LM
@pytest.fixture(scope="module")
def minilm():
    from acula.text.teacher import Teacher

    with pytest.MonkeyPatch.context() as m:
        m.setenv("HF_HUB_OFFLINE", "1")
        yield Teacher("minilm", progress=False)


def count_calls(monkeypatch, teacher) -> list[int]:
    calls = []
    original = teacher.encode

    def counted(texts):
        calls.append(len(texts))
        return original(texts)

    monkeypatch.setattr(teacher, "encode", counted)
    return calls


@pytest.mark.numerics
def test_minilm_each_report_is_encoded_once(tmp_path, minilm, monkeypatch):
    from acula.text.teacher import Teacher

    calls = count_calls(monkeypatch, minilm)
    texts = REPORTS[:4] + REPORTS[:2]  # duplicates are encoded once
    first, stats = embed_texts_with_stats(minilm, texts, tmp_path)
    assert calls == [4] and (stats.unique, stats.hits, stats.misses) == (4, 0, 4)
    assert first.shape == (6, 384) and first.dtype == np.float32
    np.testing.assert_array_equal(first[4:], first[:2])
    direct = Teacher.encode(minilm, texts[:4])  # unwrapped encode; the cache may have batched them otherwise
    assert_close(first[:4], direct, reorder_tol(scale_of(direct), net_shape(minilm.model, tokens=512)), "cached")

    again, stats = embed_texts_with_stats(minilm, texts[::-1], tmp_path)
    assert calls == [4] and (stats.hits, stats.misses) == (4, 0)  # the LM did not run
    np.testing.assert_array_equal(again, first[::-1])

    new = "A new report: wheezes in the right upper lobe."
    out, stats = embed_texts_with_stats(minilm, [new, *texts], tmp_path)
    assert calls == [4, 1] and (stats.hits, stats.misses) == (4, 1)
    np.testing.assert_array_equal(out[1:], first)
    _, stats = embed_texts_with_stats(minilm, [new], tmp_path)
    assert calls == [4, 1] and stats.misses == 0


def test_other_layer_or_pooling_is_another_cache_entry(tmp_path, minilm):
    from acula.text.teacher import Teacher

    base = embed_texts(minilm, REPORTS[:3], tmp_path)
    for other in (Teacher("minilm", layer=-2, progress=False), Teacher("minilm", pooling="cls", progress=False)):
        out, stats = embed_texts_with_stats(other, REPORTS[:3], tmp_path)
        assert stats.misses == 3 and np.abs(out - base).max() > 1e-3
    assert len({p.parent for p in shards(tmp_path)}) == 3

    fresh = Teacher("minilm", layer=-2, progress=False)
    _, stats = embed_texts_with_stats(fresh, REPORTS[:3], tmp_path)
    assert stats.misses == 0 and fresh._model is None  # all cached: the LM weights were never loaded
    info = json.loads((EmbeddingCache(tmp_path).dir_for(minilm.key) / "key.json").read_text())
    assert info["key"] == minilm.key and info["hidden_size"] == 384 and info["teacher"]["pooling"] == "mean"


# ---------------------------------------------------------------------------------------- cache mechanics
def test_store_and_lookup(tmp_path):
    cache = EmbeddingCache(tmp_path)
    emb = expected(REPORTS[:3])
    cache.store("k", REPORTS[:3], emb)
    found = EmbeddingCache(tmp_path).lookup("k", REPORTS[:5])
    assert set(found) == {sha256_text(t) for t in REPORTS[:3]}
    for t, row in zip(REPORTS, emb):
        np.testing.assert_array_equal(found[sha256_text(t)], row)
    assert EmbeddingCache(tmp_path).lookup("other key", REPORTS[:3]) == {}
    hashes = [sha256_text(t) for t in REPORTS[3:5]]
    cache.store("k", hashes, expected(REPORTS[3:5]), hashed=True)
    assert len(cache.lookup("k", hashes, hashed=True)) == 2  # new shards are picked up by a live cache

    with pytest.raises(ValueError, match="not a lowercase sha256"):
        cache.lookup("k", ["not a hash"], hashed=True)
    with pytest.raises(ValueError, match=r"\(2, H\)"):
        cache.store("k", REPORTS[:2], expected(REPORTS[:3]))
    with pytest.raises(ValueError, match="holds 6-dim"):
        cache.store("k", REPORTS[:1], np.zeros((1, 7), np.float32))
    with pytest.raises(ValueError, match="non-finite"):
        cache.store("k", REPORTS[:1], np.full((1, 6), np.nan, np.float32))
    wider = FakeTeacher(hidden_size=8)
    wider.key = "k"
    with pytest.raises(ValueError, match="holds 6-dim.*gives 8"):
        embed_texts(wider, REPORTS[:1], tmp_path)


def test_empty_report_is_named_before_anything_runs(tmp_path):
    teacher = FakeTeacher()
    with pytest.raises(ValueError, match="text 1 is empty"):
        embed_texts(teacher, [REPORTS[0], " ", REPORTS[1]], tmp_path)
    assert teacher.calls == [] and shards(tmp_path) == []
    assert embed_texts(teacher, [], tmp_path).shape == (0, 6)


def test_interrupted_run_keeps_finished_shards(tmp_path):
    crashing = FakeTeacher(fail_on_call=3)
    with pytest.raises(KeyboardInterrupt):
        embed_texts(crashing, REPORTS, tmp_path, shard_size=3)
    assert len(shards(tmp_path)) == 2  # chunks 1 and 2 were stored before the crash
    assert not list(tmp_path.rglob("*.tmp"))

    resumed = FakeTeacher()
    out, stats = embed_texts_with_stats(resumed, REPORTS, tmp_path, shard_size=3)
    assert (stats.hits, stats.misses) == (6, 4) and resumed.calls == [REPORTS[6:9], REPORTS[9:]]
    np.testing.assert_array_equal(out, expected(REPORTS))


@pytest.mark.parametrize("damage", ["truncate", "flip_data", "garbage", "wrong_width"])
def test_corrupt_shard_is_reported_and_ignored(tmp_path, damage):
    teacher = FakeTeacher()
    embed_texts(teacher, REPORTS, tmp_path, shard_size=4)
    victim = shards(tmp_path)[1]  # holds REPORTS[4:8]
    data = victim.read_bytes()
    if damage == "truncate":
        victim.write_bytes(data[: len(data) // 2])
    elif damage == "flip_data":  # header intact, a float changed: only the checksum can tell
        victim.write_bytes(data[:-5] + bytes([data[-5] ^ 0xFF]) + data[-4:])
    elif damage == "garbage":
        victim.write_bytes(b"\x00" * len(data))
    else:
        cache = EmbeddingCache(tmp_path)
        victim.unlink()
        folder = cache.dir_for(teacher.key)
        from safetensors.numpy import save_file

        meta = {"format": "acula-text-embeddings/1", "hashes": json.dumps([sha256_text(t) for t in REPORTS[4:8]])}
        emb = np.zeros((4, 9), np.float32)
        meta["sha256"] = hashlib.sha256(emb.tobytes()).hexdigest()
        save_file({"embeddings": emb}, str(folder / "0-bad.safetensors"), metadata=meta)

    cache = EmbeddingCache(tmp_path)
    with pytest.warns(UserWarning, match="ignoring corrupt embedding cache shard"):
        found = cache.lookup(teacher.key, REPORTS)
    assert len(cache.bad_shards) == 1
    assert set(found) == {sha256_text(t) for t in REPORTS[:4] + REPORTS[8:]}

    repaired = FakeTeacher()
    with pytest.warns(UserWarning):
        out, stats = embed_texts_with_stats(repaired, REPORTS, tmp_path, shard_size=4)
    assert stats.misses == 4 and repaired.calls == [REPORTS[4:8]]
    np.testing.assert_array_equal(out, expected(REPORTS))


def _fill(cache_dir: str, texts: list[str], start) -> None:
    start.wait(timeout=60)
    embed_texts(FakeTeacher(delay=0.05), texts, cache_dir, shard_size=2)


def test_two_processes_fill_one_cache(tmp_path):
    """No locks: overlapping workers may both encode a text; every copy is identical and whole."""
    halves = [REPORTS[:7], REPORTS[3:]]  # REPORTS[3:7] are filled by both
    ctx = mp.get_context("spawn")  # workers import numpy + acula.text.cache only
    start = ctx.Barrier(2)
    procs = [ctx.Process(target=_fill, args=(str(tmp_path), h, start)) for h in halves]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0, 0]
    # 4 + 4 shards when both saw an empty cache; 4 + 2 if one finished before the other looked
    assert 6 <= len(shards(tmp_path)) <= 8 and not list(tmp_path.rglob("*.tmp"))

    cache = EmbeddingCache(tmp_path)
    teacher = FakeTeacher()
    found = cache.lookup(teacher.key, REPORTS)
    assert cache.bad_shards == [] and len(found) == len(REPORTS)
    out, stats = embed_texts_with_stats(teacher, REPORTS, tmp_path)
    assert stats.misses == 0 and teacher.calls == []
    np.testing.assert_array_equal(out, expected(REPORTS))
