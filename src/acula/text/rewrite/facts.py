"""What a report states: (concept, polarity) statements found by a NegEx-style pass.

Reports are short, templated English, so cue words with a scope inside the clause are enough to tell
"crackles" from "no crackles" and "murmur could not be determined"; no parser or model is needed.
"""

from __future__ import annotations

import re
from typing import Iterable

AFF, NEG, UNC = "affirmed", "negated", "uncertain"

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
