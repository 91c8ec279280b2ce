"""Rewriting rows: cache lookup, drafts, validation with feedback, cache store, and the JSONL log."""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from ... import _io
from .backends import RewriteError, _redact
from .check import check_rewrite, clean_output
from .findings import parse_findings
from .prompt import PROMPT_VERSION, build_messages, retry_messages

STATUS_REWRITTEN = "rewritten"
STATUS_KEPT = "kept-template"


class RewriteCache:
    """One JSON file per key (root/ab/abcdef....json), written atomically: safe to share between runs."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).expanduser()

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict | None:
        p = self.path(key)
        if not p.is_file():
            return None
        try:
            entry = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            warnings.warn(f"ignoring unreadable rewrite cache entry {p}: {e}", stacklevel=2)
            return None
        if not isinstance(entry, dict) or entry.get("status") not in (STATUS_REWRITTEN, STATUS_KEPT):
            warnings.warn(f"ignoring malformed rewrite cache entry {p}", stacklevel=2)
            return None
        return entry

    def put(self, key: str, entry: dict) -> None:
        _io.write_json(self.path(key), entry)


@dataclass
class RewriteStats:
    rows: int = 0
    rewritten: int = 0
    kept: int = 0
    cached: int = 0
    generated: int = 0  # drafts asked from the backend in this run

    def summary(self) -> str:
        return (f"rewrite: {self.rewritten}/{self.rows} rewritten, {self.kept} kept the template; "
                f"{self.cached} from cache, {self.generated} drafts generated")


@dataclass
class Rewriter:
    """Rewrites one template at a time: cache lookup, up to `attempts` drafts, validation, cache store."""

    backend: Any
    cache_dir: str | os.PathLike
    seed: int = 0
    attempts: int = 3
    stats: RewriteStats = field(default_factory=RewriteStats)

    def __post_init__(self):
        if self.attempts < 1:
            raise ValueError(f"attempts must be >= 1, got {self.attempts}")
        self.cache = RewriteCache(self.cache_dir)

    def key(self, template: str, findings: Sequence[Sequence[str]]) -> str:
        ident = {**self.backend.identity, "prompt_version": PROMPT_VERSION, "seed": self.seed,
                 "attempts": self.attempts, "template_sha256": _io.sha256_text(template),
                 "findings_sha256": _io.sha256_text(json.dumps([list(f) for f in findings]))}
        return hashlib.sha256(json.dumps(ident, sort_keys=True).encode("utf-8")).hexdigest()

    def rewrite(self, template: str, findings: Sequence[Sequence[str]], dataset: str = "") -> tuple[dict, dict]:
        """-> (result {status, text, reason}, log record). Backend failures raise RewriteError."""
        key = self.key(template, findings)
        # a per-template seed: two records with the same template share one cache entry
        gen_seed = int(_io.sha256_text(f"{self.seed}:{_io.sha256_text(template)}")[:8], 16) % (2 ** 31)
        messages = build_messages(template, findings, dataset)
        log = {"backend": self.backend.kind, "model": self.backend.model, "prompt_version": PROMPT_VERSION,
               "seed": self.seed, "generation_seed": gen_seed, "cache_key": key, "messages": messages}
        if (hit := self.cache.get(key)) is not None:
            self.stats.cached += 1
            return hit, {**log, "cached": True, "status": hit["status"], "reason": hit.get("reason", ""),
                         "attempts": hit.get("attempts", [])}
        attempts, msgs, reason = [], messages, ""
        for k in range(self.attempts):
            raw = self.backend.generate(msgs, gen_seed + k)
            self.stats.generated += 1
            draft = clean_output(raw)
            problems = check_rewrite(draft, template, findings)
            if any(sec and sec in draft for sec in self.backend.secrets()):
                problems.append("the draft contains a secret (the API key); never written")
            attempts.append({"output": raw, "problems": problems})
            if not problems:
                result = {"status": STATUS_REWRITTEN, "text": draft, "reason": ""}
                break
            msgs = retry_messages(messages, draft or raw, problems)
            reason = "; ".join(problems)
        else:
            drafts = f"{self.attempts} draft{'s' if self.attempts > 1 else ''}"
            result = {"status": STATUS_KEPT, "text": template, "reason": f"{drafts} rejected: {reason}"}
        secrets = self.backend.secrets()
        self.cache.put(key, _redact({**result, "attempts": attempts, **self.backend.identity,
                                     "prompt_version": PROMPT_VERSION, "seed": self.seed}, secrets))
        return result, {**log, "cached": False, "status": result["status"], "reason": result["reason"],
                        "attempts": attempts}


def rewrite_rows(rows: list[dict], backend: Any, cache_dir: str | os.PathLike, log_path: str | os.PathLike | None = None,
                 seed: int = 0, attempts: int = 3, progress: bool = True) -> tuple[list[dict], RewriteStats]:
    """Rows with `Gen_Report` rewritten (or kept), plus `template_report`, `rewrite_status`, `rewrite`.

    `rewrite_status` is "rewritten" or "kept-template: <reason>". The log (JSONL, one record per
    row: prompt, seed, model, drafts, status) is written atomically at the end, also when a backend
    error stops the run; finished rows are already in the cache then, so a rerun resumes.
    """
    from tqdm.auto import tqdm

    rw = Rewriter(backend, cache_dir, seed=seed, attempts=attempts)
    tag = f"{backend.kind}:{backend.model};{PROMPT_VERSION};seed={seed}"
    out, log = [], []
    try:
        for i, row in enumerate(tqdm(rows, desc=f"rewriting with {backend.model}", unit="report",
                                     disable=not progress or len(rows) < 2)):
            template = str(row.get("Gen_Report") or "")
            new = {**row, "template_report": template, "rewrite": tag}
            rid = row.get("record_id", i)
            try:
                findings = parse_findings(row.get("findings"))
            except ValueError as e:
                raise ValueError(f"row {i} (record {rid}): {e}") from None
            if not template.strip() or not findings:
                why = "empty template" if not template.strip() else "no findings to check a rewrite against"
                new["rewrite_status"] = f"{STATUS_KEPT}: {why}"
                log.append({"record_id": rid, "status": STATUS_KEPT, "reason": why, "cached": False})
                rw.stats.kept += 1
                out.append(new)
                continue
            try:
                result, rec = rw.rewrite(template, findings, str(row.get("dataset") or ""))
            except RewriteError as e:
                raise RewriteError(f"row {i} (record {rid}): {e}. Rows before it are cached; rerun to resume.") from None
            new["Gen_Report"] = result["text"]
            new["rewrite_status"] = (STATUS_REWRITTEN if result["status"] == STATUS_REWRITTEN
                                     else f"{STATUS_KEPT}: {result.get('reason', '')}")
            if result["status"] == STATUS_REWRITTEN:
                rw.stats.rewritten += 1
            else:
                rw.stats.kept += 1
            log.append({"record_id": rid, "dataset": row.get("dataset"), **rec})
            out.append(new)
    finally:
        rw.stats.rows = len(out)
        if log_path is not None and log:
            secrets = backend.secrets()
            _io.write_text(log_path, "".join(json.dumps(_redact(r, secrets), default=str) + "\n" for r in log))
    return out, rw.stats
