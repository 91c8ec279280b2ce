"""The table, the diagnostics table and the figure of a finished (or partial) run."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np

from ..._io import atomic_path

from .config import ARM_NAMES, ARMS, ExperimentConfig


def table(summary: dict) -> str:
    arms = [a for a in ARMS if any(a in e for e in summary["tasks"])]
    diffs = [("aligned_vs_baseline", "acula − MAM")] + [
        (k, n) for k, n in (("aligned_masked_vs_aligned", "masked − full"),
                            ("aligned_masked_tuned_vs_aligned", "masked+tuned − full"))
        if any(k in e for e in summary["tasks"])]
    lines = ["| task | " + " | ".join(ARM_NAMES[a] for a in arms) + " | "
             + " | ".join(f"{n} (paired t p)" for _, n in diffs) + " |", "|---" * (len(arms) + len(diffs) + 1) + "|"]

    def diff(d: dict | None) -> str:
        return f"{d['mean_diff']:+.3f} ({d['wins']}/{len(d['per_seed'])} seeds, p={d['p_paired_t']:.2f})" if d else ""

    for e in summary["tasks"]:
        cells = [f"{e[a]['mean']:.3f} ± {e[a]['std']:.3f}" if a in e else "" for a in arms]
        lines.append(f"| {e['task']} (n={e['n_test']}, {e['n_test_subjects']} subj.) | " + " | ".join(cells)
                     + " | " + " | ".join(diff(e.get(k)) for k, _ in diffs) + " |")
    if summary["zero_shot"]:
        zs_arms = [a for a in ARMS if any(r["arm"] == a for r in summary["zero_shot"])]
        lines += ["", "| zero-shot AUROC | " + " | ".join(ARM_NAMES[a] for a in zs_arms) + " |"]
        lines.append("|---" * (len(zs_arms) + 1) + "|")
        for t in dict.fromkeys(r["task"] for r in summary["zero_shot"]):
            cells = []
            for a in zs_arms:
                r = next((r for r in summary["zero_shot"] if r["task"] == t and r["arm"] == a), None)
                cells.append(f"{r['mean']:.3f} ± {r['std']:.3f}" if r else "")
            lines.append(f"| {t} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def diagnostics_table(summary: dict) -> str:
    """Per corpus and arm, mean over seeds: features vs reports (alignment / held-out subjects), features vs each
    task's labels (held-out); and the reports vs each task's labels."""
    diag = summary.get("diagnostics")
    if not diag:
        return ""
    lines = []
    for corpus, per_task in diag["reports_vs_labels"].items():
        arms = [a for a in ARMS if a in diag["arms"]]
        keys = list(diag["arms"][arms[0]][0][corpus])
        lines += [f"**{corpus}** (linear CKA, unbiased; reports vs labels: "
                  + ", ".join(f"{t} {v:.3f}" for t, v in per_task.items()) + ")", "",
                  "| features vs | " + " | ".join(ARM_NAMES[a] for a in arms) + " |", "|---" * (len(arms) + 1) + "|"]
        for k in keys:
            cells = [f"{np.mean([run[corpus][k] for run in diag['arms'][a]]):.3f}" for a in arms]
            name = k.removeprefix("features_vs_").replace("_", " ")
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def plot(summary: dict, path: Path) -> None:
    """Bars per task and arm (mean ± std over alignment seeds) with each seed as a dot; chance at 0.5."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"initial": "#bbbbbb", "baseline": "#7a9cc6", "aligned": "#d9822b", "aligned_masked": "#e8b04a",
               "aligned_masked_tuned": "#c9a227", "published": "#b05f9e", "label_cka": "#8fbc8f"}
    tasks = summary["tasks"]
    rows = 1 if len(tasks) <= 4 else 2
    cols = -(-len(tasks) // rows)
    fig, axes = plt.subplots(rows, cols, figsize=(2.8 * cols, 3.2 * rows), squeeze=False)
    for ax in axes.flat[len(tasks):]:
        ax.axis("off")
    for ax, e in zip(axes.flat, tasks):
        arms = [a for a in ARMS if a in e]
        for j, a in enumerate(arms):
            ax.bar(j, e[a]["mean"], yerr=e[a]["std"], color=colours[a], capsize=3)
            ax.plot([j] * len(e[a]["per_seed"]), e[a]["per_seed"], "k.", ms=3)
        ax.set_xticks(range(len(arms)), [{"initial": "init", "baseline": "MAM", "aligned": "acula",
                                          "aligned_masked": "masked", "aligned_masked_tuned": "m+tune",
                                          "published": "publ.", "label_cka": "labels"}[a] for a in arms],
                      rotation=45, fontsize=8)
        lo = min(min(min(e[a]["per_seed"]) for a in arms), 0.5)
        hi = max(max(max(e[a]["per_seed"]) + e[a]["std"] for a in arms), 0.5)
        ax.set_ylim(lo - 0.04, min(1.0, hi + 0.04))
        ax.axhline(0.5, color="k", lw=0.5, ls=":")
        ax.set_title(e["task"].replace("@", "\n@"), fontsize=8)
    fig.suptitle(f"{summary['encoder']}: probe AUROC on held-out subjects, mean ± std over "
                 f"{len(summary['seeds'])} alignment seeds (dots: seeds)", fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def config_dict(cfg: ExperimentConfig, crop: int | None) -> dict:
    d = asdict(cfg)
    d["train"] = {k: v for k, v in d["train"].items() if k != "extra"}
    d["crop_length"] = crop
    d["corpora"] = [asdict(c) for c in cfg.corpora]
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in d.items()}
