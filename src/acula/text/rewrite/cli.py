"""The `--rewrite` options of `acula reports build` and what they do to the rows."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from .backends import SMOLLM2, HFBackend, OpenAIBackend
from .driver import rewrite_rows


def default_cache_dir() -> Path:
    root = os.environ.get("ACULA_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "acula")
    return Path(root) / "rewrites"


def add_rewrite_args(parser) -> None:
    """The `--rewrite` options of `acula reports build`."""
    g = parser.add_argument_group("LLM rewriting (optional; every rewrite is checked against the findings)")
    g.add_argument("--rewrite", choices=("none", "openai", "hf"), default="none",
                   help="rephrase each templated report with an LLM (default: none)")
    g.add_argument("--llm-url", default=None, help="OpenAI-compatible base URL, e.g. http://localhost:8000/v1")
    g.add_argument("--llm-model", default=None,
                   help=f"model name (openai) or HF id / folder / .gguf file (hf; default {SMOLLM2!r}, bundled)")
    g.add_argument("--gguf-file", default=None, help="GGUF file inside --llm-model (hf backend)")
    g.add_argument("--api-key-env", default="OPENAI_API_KEY",
                   help="environment variable holding the API key (read at call time, never written)")
    g.add_argument("--llm-timeout", type=float, default=60.0, help="seconds per HTTP request")
    g.add_argument("--llm-retries", type=int, default=4, help="HTTP retries on 429/5xx/connection errors")
    g.add_argument("--llm-temperature", type=float, default=0.0, help="0 = greedy (default); > 0 = seeded sampling")
    g.add_argument("--llm-max-tokens", type=int, default=200)
    g.add_argument("--rewrite-attempts", type=int, default=3, help="drafts per report before keeping the template")
    g.add_argument("--rewrite-seed", type=int, default=0)
    g.add_argument("--rewrite-cache", default=None,
                   help="cache folder (default $ACULA_CACHE_DIR/rewrites or ~/.cache/acula/rewrites)")
    g.add_argument("--rewrite-log", default=None, help="JSONL log (default: OUT with suffix .rewrite.jsonl)")


def make_backend(args) -> Any:
    if args.rewrite == "openai":
        if not args.llm_url:
            raise ValueError("--rewrite openai needs --llm-url (an OpenAI-compatible base URL)")
        return OpenAIBackend(args.llm_url, args.llm_model, api_key_env=args.api_key_env, timeout=args.llm_timeout,
                             http_retries=args.llm_retries, temperature=args.llm_temperature,
                             max_tokens=args.llm_max_tokens)
    if args.rewrite == "hf":
        return HFBackend(args.llm_model or SMOLLM2, gguf_file=args.gguf_file, temperature=args.llm_temperature,
                         max_new_tokens=args.llm_max_tokens)
    raise ValueError(f"unknown rewrite backend {args.rewrite!r}")


def apply_rewrite(rows: list[dict], args) -> list[dict]:
    """Rewrite `rows` as `args` (from `add_rewrite_args`) ask; unchanged when --rewrite is none."""
    if getattr(args, "rewrite", "none") in (None, "none"):
        return rows
    backend = make_backend(args)
    log = args.rewrite_log
    if log is None and getattr(args, "out", None):
        log = Path(args.out).with_suffix(".rewrite.jsonl")
    out, stats = rewrite_rows(rows, backend, args.rewrite_cache or default_cache_dir(), log_path=log,
                              seed=args.rewrite_seed, attempts=args.rewrite_attempts)
    print(stats.summary() + (f"; log: {log}" if log else ""), file=sys.stderr)
    return out
