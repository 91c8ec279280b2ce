"""The chat prompt of a rewrite, and the feedback turn after a rejected draft."""

from __future__ import annotations

from typing import Sequence

PROMPT_VERSION = "acula-rewrite/2"  # part of every cache key: change it when the prompt changes
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
