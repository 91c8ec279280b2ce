"""What a rewrite must keep: one `Requirement` per finding of the record (its words, or a synonym, with
its polarity)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Sequence

from .facts import AFF, NEG, UNC, _ROMAN, _content, _norm, _specific_concepts, polarity_at, tokens

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
