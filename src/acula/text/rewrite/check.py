"""Whether a draft is an acceptable rewrite: format (no debris, advice or runaway length) and facts (every
finding kept with its polarity, nothing added that the template or the findings do not state)."""

from __future__ import annotations

import json
import re
from typing import Sequence

from .facts import _norm, implied, mentions
from .findings import requirements

_ADVICE = re.compile(r"\b(?:recommend\w*|advis\w*|advice|should|follow(?: |-)?up|further (?:\w+ )?(?:evaluation|"
                     r"investigation|assessment|work ?up|testing|correlation|management)|consult\w*|refer(?:ral|red)?|"
                     r"treatment|therap\w*|monitor\w*)\b")
_DEBRIS = re.compile(r"[{}\[\]<>`|]|\"report\"|\\n|^\s*report\s*:|\b(?:rewritten|final|template|new) report\s*:", re.I)


def clean_output(raw: str) -> str:
    """Strip what chat models wrap around an answer: quotes, a 'Here is...' line, a JSON envelope."""
    text = (raw or "").strip()
    if text.startswith("{"):
        try:
            obj = json.loads(text)
        except json.JSONDecodeError:
            obj = None
        if isinstance(obj, dict):
            vals = [v for v in obj.values() if isinstance(v, str)]
            text = obj["report"] if isinstance(obj.get("report"), str) else (vals[0] if len(vals) == 1 else text)
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if len(lines) > 1 and re.match(r"\s*(?:sure|here is|here's|certainly|rewritten)\b.*:\s*$", lines[0], re.I):
        lines = lines[1:]
    text = " ".join(ln.strip() for ln in lines)
    text = re.sub(r"^(?:rewritten |final )?report\s*:\s*", "", text, flags=re.I)
    text = re.sub(r"\s*(?:rewritten |final |new )?report\s*:\s*$", "", text, flags=re.I)  # a dangling label
    return text.strip().strip("\"'\u201c\u201d").strip()


def _sentences(text: str) -> int:
    return len([s for s in re.split(r"(?<=[.!?])\s+", text.strip()) if s.strip()])


def check_rewrite(text: str, template: str, findings: Sequence[Sequence[str]], max_sentences: int = 5) -> list[str]:
    """Reasons to reject `text` as a rewrite of `template`; empty when it is acceptable.

    Format: non-empty, no JSON/markup debris, no advice, bounded length. Facts: every finding is
    still stated with its polarity, and every murmur/sound/diagnosis statement of the rewrite is
    one the template or the findings make (or imply: "no adventitious sounds" -> "no crackles").
    """
    problems = []
    text = text.strip()
    if len(text) < 15:
        return ["empty or too short"]
    if _DEBRIS.search(text):
        problems.append("contains markup or JSON debris")
    if not re.search(r"[.!?][\"')\]]*$", text):
        problems.append("ends mid-sentence (truncated?)")
    sents = [_norm(x) for x in re.split(r"(?<=[.!?])\s+", text) if x.strip()]
    if len(set(sents)) < len(sents):
        problems.append("repeats a sentence")
    limit = max(400, 3 * len(template))
    if len(text) > limit:
        problems.append(f"too long ({len(text)} characters, limit {limit})")
    n_sent, most = _sentences(text), max(max_sentences, _sentences(template))
    if n_sent > most:
        problems.append(f"{n_sent} sentences (at most {most})")
    if m := _ADVICE.search(_norm(text)):
        problems.append(f"gives advice ('{m.group(0)}')")
    reqs = requirements(findings)
    stated = implied(mentions(text))
    for r in reqs:
        if (p := r.problem(text, stated)) is not None:
            problems.append(p)
    allowed = implied(mentions(template) | {(c, r.polarity) for r in reqs for c in r.concepts if r.polarity})
    for concept, pol in sorted(mentions(text) - allowed):
        problems.append(f"adds '{concept}' ({pol}), which the findings do not state")
    return problems
