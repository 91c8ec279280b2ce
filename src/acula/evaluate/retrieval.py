"""The old home of audio <-> report retrieval, kept so existing imports work; it now lives in
`acula.evaluate.joint.retrieval`."""

from __future__ import annotations

from .joint.retrieval import (KS, MAP_K, average_precision_at_k, chance_recall_at_k, evaluate,  # noqa: F401
                              ranked_relevance, recall_at_k, relevance, retrieval_metrics, run_retrieval)
