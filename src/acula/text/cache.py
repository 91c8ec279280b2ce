"""On-disk cache of teacher embeddings, keyed by (teacher.key, sha256(text)).

The frozen LM depends only on the text, so each unique report is encoded once, ever (the published
code re-ran a 4 B LM on every batch of every epoch: docs/protocol.md#published-bugs, item 5). Layout:

    root/<sha256(key)[:24]>/key.json              what the key means
    root/<sha256(key)[:24]>/<unique>.safetensors  shards: `embeddings` (n, H) float32; metadata
                                                  holds the n text hashes and a checksum

Shards are immutable and written atomically under unique names, so several processes can fill a
cache at once without locks, and an interrupted run keeps every finished shard. Reading is the
union of all shards (first copy of a duplicate wins). A shard that fails any check is reported and
ignored, never trusted.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file

from .._io import atomic_path, sha256_text, write_json

FORMAT = "acula-text-embeddings/1"
_HEX64 = re.compile(r"[0-9a-f]{64}")


def check_texts(texts: Sequence[str]) -> None:
    """Empty reports would embed to a constant vector and silently pull every audio clip to it."""
    if isinstance(texts, str):
        raise TypeError("texts must be a list of strings, not one string")
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"text {i} is {type(t).__name__}, expected str")
        if not t.strip():
            raise ValueError(f"text {i} is empty or whitespace only; drop or fill it before encoding")


class EmbeddingCache:
    """Union of the shards under `root`, indexed lazily per teacher key (shards never change)."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self._rows: dict[str, dict[str, np.ndarray]] = {}  # key -> text hash -> (H,) row
        self._seen: dict[str, set[str]] = {}  # key -> shard names already read (good or bad)
        self._width: dict[str, int] = {}
        self.bad_shards: list[tuple[Path, str]] = []

    def dir_for(self, key: str) -> Path:
        return self.root / hashlib.sha256(key.encode("utf-8")).hexdigest()[:24]

    def lookup(self, key: str, texts: Sequence[str], *, hashed: bool = False) -> dict[str, np.ndarray]:
        """{text hash: (H,) float32} for the texts present (pass hashes with hashed=True)."""
        rows = self._refresh(key)
        hashes = _hashes(texts, hashed)
        return {h: rows[h] for h in hashes if h in rows}

    def store(self, key: str, texts: Sequence[str], embeddings: np.ndarray, *, hashed: bool = False) -> Path:
        """Write one new shard; returns its path."""
        hashes = _hashes(texts, hashed)
        emb = np.ascontiguousarray(embeddings, dtype=np.float32)
        if emb.ndim != 2 or emb.shape[0] != len(hashes):
            raise ValueError(f"embeddings must be ({len(hashes)}, H) for {len(hashes)} texts, got {emb.shape}")
        if not np.isfinite(emb).all():
            raise ValueError("refusing to cache non-finite embeddings")
        width = self.hidden_size(key)
        if width is not None and emb.shape[1] != width:
            raise ValueError(f"cache {self.dir_for(key)} holds {width}-dim embeddings, got {emb.shape[1]}")
        folder = self._ensure_dir(key, emb.shape[1])
        meta = {"format": FORMAT, "hashes": json.dumps(hashes), "sha256": _checksum(emb)}
        path = folder / f"{time.time_ns():020d}-{os.getpid()}-{uuid.uuid4().hex[:12]}.safetensors"
        with atomic_path(path) as tmp:
            save_file({"embeddings": emb}, str(tmp), metadata=meta)
        return path

    def hidden_size(self, key: str) -> int | None:
        """Width recorded in key.json when the first shard of `key` was written; None if none yet."""
        if key not in self._width:
            info = self.dir_for(key) / "key.json"
            if info.is_file():
                try:
                    d = json.loads(info.read_text())
                    width = int(d["hidden_size"])
                except (ValueError, KeyError, TypeError) as e:
                    raise ValueError(f"{info} is unreadable ({e}); delete {info.parent} to rebuild it") from e
                if d.get("key") != key:
                    raise ValueError(f"{info} describes another key ({d.get('key')!r}), expected {key!r}")
                self._width[key] = width
        return self._width.get(key)

    def __len__(self) -> int:
        return sum(len(r) for r in self._rows.values())

    # ------------------------------------------------------------------------------------------
    def _ensure_dir(self, key: str, width: int) -> Path:
        folder = self.dir_for(key)
        info = folder / "key.json"
        if not info.is_file():  # concurrent writers write identical content; atomic rename keeps it whole
            write_json(info, {"key": key, "teacher": _maybe_json(key), "hidden_size": width, "format": FORMAT})
        self._width.setdefault(key, width)
        return folder

    def _refresh(self, key: str) -> dict[str, np.ndarray]:
        """Read shards not seen before, oldest first (names start with a timestamp)."""
        rows = self._rows.setdefault(key, {})
        seen = self._seen.setdefault(key, set())
        folder = self.dir_for(key)
        if not folder.is_dir():
            return rows
        width = self.hidden_size(key)
        for path in sorted(folder.glob("*.safetensors")):
            if path.name in seen:
                continue
            seen.add(path.name)
            try:
                hashes, emb = _read_shard(path, width)
            except Exception as e:  # any failure means the shard cannot be trusted
                self.bad_shards.append((path, str(e)))
                warnings.warn(f"ignoring corrupt embedding cache shard {path}: {e}", stacklevel=3)
                continue
            for h, row in zip(hashes, emb):
                rows.setdefault(h, row)
        return rows


def _read_shard(path: Path, width: int | None) -> tuple[list[str], np.ndarray]:
    with safe_open(str(path), framework="np") as f:
        meta = f.metadata() or {}
        if meta.get("format") != FORMAT:
            raise ValueError(f"format {meta.get('format')!r}, expected {FORMAT!r}")
        emb = f.get_tensor("embeddings")
    hashes = json.loads(meta["hashes"])
    if emb.dtype != np.float32 or emb.ndim != 2 or emb.shape[0] != len(hashes):
        raise ValueError(f"embeddings {emb.dtype} {emb.shape} do not match {len(hashes)} text hashes")
    if width is not None and emb.shape[1] != width:
        raise ValueError(f"hidden size {emb.shape[1]}, key.json says {width}")
    if not all(isinstance(h, str) and _HEX64.fullmatch(h) for h in hashes):
        raise ValueError("text hashes are not sha256 hex digests")
    if _checksum(emb) != meta.get("sha256"):
        raise ValueError("checksum mismatch (data changed after writing)")
    return hashes, emb


def _checksum(emb: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(emb, dtype="<f4").tobytes()).hexdigest()


def _hashes(texts: Sequence[str], hashed: bool) -> list[str]:
    if isinstance(texts, str):
        raise TypeError("expected a list of texts, not one string")
    if not hashed:
        return [sha256_text(t) for t in texts]
    bad = [h for h in texts if not (isinstance(h, str) and _HEX64.fullmatch(h))]
    if bad:
        raise ValueError(f"hashed=True but {bad[0]!r} is not a lowercase sha256 hex digest")
    return list(texts)


def _maybe_json(s: str):
    try:
        return json.loads(s)
    except ValueError:
        return s


@dataclass(frozen=True)
class EmbedStats:
    """Counts over *unique* texts: `misses` is how many the LM had to encode."""

    texts: int
    unique: int
    hits: int
    misses: int


def embed_texts_with_stats(teacher, texts: Sequence[str], cache_dir: str | os.PathLike,
                           shard_size: int = 1024) -> tuple[np.ndarray, EmbedStats]:
    """(N, H) float32 embeddings in input order, encoding only texts missing from the cache.

    Misses are encoded and stored `shard_size` at a time, so a crash loses at most one chunk.
    `teacher` needs `key`, `hidden_size` and `encode(list[str]) -> (n, H)`.
    """
    texts = list(texts)
    check_texts(texts)
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}")
    cache = EmbeddingCache(cache_dir)
    key, width = teacher.key, int(teacher.hidden_size)
    unique = list(dict.fromkeys(texts))
    hashes = {t: sha256_text(t) for t in unique}
    stored = cache.hidden_size(key)
    if stored is not None and stored != width:
        raise ValueError(f"cache {cache.dir_for(key)} holds {stored}-dim embeddings but teacher "
                         f"{getattr(teacher, 'name', '')!r} gives {width}")
    found = cache.lookup(key, list(hashes.values()), hashed=True)
    missing = [t for t in unique if hashes[t] not in found]
    for i in range(0, len(missing), shard_size):
        chunk = missing[i:i + shard_size]
        emb = np.asarray(teacher.encode(chunk), dtype=np.float32)
        if emb.shape != (len(chunk), width):
            raise ValueError(f"teacher returned {emb.shape}, expected {(len(chunk), width)}")
        cache.store(key, [hashes[t] for t in chunk], emb, hashed=True)
        found.update({hashes[t]: row for t, row in zip(chunk, emb)})
    out = np.stack([found[hashes[t]] for t in texts]) if texts else np.empty((0, width), np.float32)
    stats = EmbedStats(texts=len(texts), unique=len(unique), hits=len(unique) - len(missing), misses=len(missing))
    return out, stats


def embed_texts(teacher, texts: Sequence[str], cache_dir: str | os.PathLike, shard_size: int = 1024) -> np.ndarray:
    """`embed_texts_with_stats` without the stats."""
    return embed_texts_with_stats(teacher, texts, cache_dir, shard_size)[0]
