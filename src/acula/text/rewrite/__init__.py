"""Optional LLM rewriting of templated reports, checked against the facts they must keep.

The published work had GPT-4o turn metadata into reports, and those reports state things the
metadata never said ("Unknown" murmurs became murmurs, advice crept in: docs/protocol.md#reports).
Here an LLM may only rephrase. Every rewrite is checked against the record's findings (each
still stated, with the same polarity: "no crackles" stays negative) and against the template (no
murmur, crackle, wheeze or diagnosis the template does not state); a rejected draft is retried
with the reasons as feedback, and a row whose drafts all fail keeps its template text and says
why in `rewrite_status`. Outcomes are cached on disk per (backend, model, prompt version, seed,
template), so a rerun makes no calls. The API key is read from the environment at call time
and never written to the cache, the log or any output.

    backend = OpenAIBackend("http://localhost:8000/v1", "gpt-4o")     # or HFBackend("smollm2")
    rows, stats = rewrite_rows(rows, backend, cache_dir="~/.cache/acula/rewrites", log_path="log.jsonl")

One module per job: `facts` (what a text states), `findings` (what a rewrite must keep), `check`
(accept or reject a draft), `prompt`, `backends` (HTTP and local LLMs), `driver` (cache, retries, log)
and `cli` (the `--rewrite` options). The names below are the package's API.
"""

from .backends import SMOLLM2, HFBackend, OpenAIBackend, RewriteError, resolve_smollm2
from .check import check_rewrite, clean_output
from .cli import add_rewrite_args, apply_rewrite, default_cache_dir, make_backend
from .driver import STATUS_KEPT, STATUS_REWRITTEN, RewriteCache, Rewriter, RewriteStats, rewrite_rows
from .facts import AFF, CONCEPTS, NEG, UNC, implied, mentions, polarity_at, tokens
from .findings import SYNONYMS, Requirement, parse_findings, requirements
from .prompt import HEART_DATASETS, PROMPT_VERSION, SYSTEM_PROMPT, build_messages, retry_messages

__all__ = ["AFF", "CONCEPTS", "HEART_DATASETS", "NEG", "PROMPT_VERSION", "SMOLLM2", "STATUS_KEPT", "STATUS_REWRITTEN",
           "SYNONYMS", "SYSTEM_PROMPT", "UNC", "HFBackend", "OpenAIBackend", "Requirement", "RewriteCache",
           "RewriteError", "RewriteStats", "Rewriter", "add_rewrite_args", "apply_rewrite", "build_messages",
           "check_rewrite", "clean_output", "default_cache_dir", "implied", "make_backend", "mentions",
           "parse_findings", "polarity_at", "requirements", "resolve_smollm2", "retry_messages", "rewrite_rows",
           "tokens"]
