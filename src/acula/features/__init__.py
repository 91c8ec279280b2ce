"""Features: recordings -> encoder inputs (by an `InputSpec`) -> clip features, in one loop for every command.

    from acula.features import Pooler, read_inputs, feature_key
    x = read_inputs(path, encoder.contract, spec)        # (K, ...) inputs of one file, or an AudioError
    key = feature_key(encoder, spec, checkpoint)         # what cached features must match

`pool` holds the one encode-and-pool loop; `files` runs it over audio files, `cache` over a log-mel cache.
Commands (extract, bench, finetune, analyze, demo, the HEAR API, experiments) call these rather than their own.
"""

from ..audio.spec import InputSpec
from .cache import embed_cache
from .embeddings import Embeddings
from .files import pool_files
from .inputs import as_spec, feature_key, read_inputs, weights_sha256
from .pool import Pooler, encode_windows, feature_forward, finite_means, pool_clips

__all__ = ["Embeddings", "InputSpec", "Pooler", "as_spec", "embed_cache", "encode_windows", "feature_forward",
           "feature_key", "finite_means", "pool_clips", "pool_files", "read_inputs", "weights_sha256"]
