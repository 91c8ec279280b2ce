"""The encode-and-pool loop over a built log-mel cache (`acula.data.features.FeatureCache`)."""

from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm

from .embeddings import Embeddings
from .pool import Pooler, feature_forward, finite_means


@torch.inference_mode()
def embed_cache(encoder, cache, batch_size: int = 32, strict: bool = False, progress: bool = True,
                device: str | torch.device = "cpu", precision: str = "fp32") -> Embeddings:
    """Embeddings of a cache's clips: its memory-mapped windows instead of decoded audio, through the same
    pooling as files, so cached and direct features agree to the bit when their batches do."""
    from ..encoders.precision import resolve_precision

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    encoder.eval().to(device)
    pooler = Pooler(feature_forward(encoder, device, precision=resolve_precision(precision, device)), batch_size)
    counts = cache.window_counts()
    with tqdm(total=int(cache.n_windows), desc=f"embed [{encoder.name}, cached]", unit="window",
              disable=not progress) as bar:
        for i in range(len(cache)):
            pooler.add(i, torch.from_numpy(cache.clip_windows(i)))
            bar.update(int(counts[i]))
    rows, bad = finite_means(pooler.finish())
    if strict and bad:
        raise ValueError(f"{cache.paths[bad[0]]}: the encoder produced a non-finite embedding")
    skipped = sorted([(i, p, r) for i, (p, r) in zip(cache.skipped_indices, cache.skipped)] +
                     [(int(cache.kept_indices[i]), cache.paths[i], "non-finite embedding") for i in bad])
    kept = sorted(rows)
    emb = np.stack([rows[i] for i in kept]) if kept else np.zeros((0, encoder.feature_dim), np.float32)
    return Embeddings(emb, [cache.paths[i] for i in kept], [p for _, p, _ in skipped], [r for _, _, r in skipped], {})
