"""Zero-shot classification from class prompts, and `run_zeroshot` (`acula zeroshot`) end to end."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from sklearn.metrics import balanced_accuracy_score

from ..._io import write_json, write_text
from ..probe import auroc
from .calibration import Calibration
from .model import project_texts
from .prompts import Prompts
from .similarity import similarity
from .space import JointSpaceConfig, kept_rows, open_joint_space

DEFAULT_LOGIT_SCALE = 100.0  # CLIP's learnt temperature; only multi-class AUROC depends on it


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def auroc_over_present_classes(y: np.ndarray, proba: np.ndarray) -> float:
    """Macro one-vs-rest AUROC over the classes present in `y` (columns of absent classes are dropped and the
    rest renormalised): a small evaluation split may miss a class that the model still scores."""
    y = np.asarray(y, dtype=int)
    present = np.unique(y)
    if len(present) < 2:
        raise ValueError(f"AUROC needs at least two classes among the evaluated recordings, "
                         f"got only class {present.tolist()}")
    if len(present) == proba.shape[1]:
        return auroc(y, proba)
    sub = proba[:, present]
    return auroc(np.searchsorted(present, y), sub / sub.sum(1, keepdims=True))


def classify(sim: np.ndarray, y: np.ndarray, logit_scale: float = DEFAULT_LOGIT_SCALE) -> dict[str, float]:
    """AUROC, accuracy and balanced accuracy of (N, C) class similarities against class indices `y`.

    Probabilities are a softmax over classes of `logit_scale * sim`; with two classes AUROC therefore
    ranks by sim[:, 1] - sim[:, 0], whatever the scale. Classes absent from `y` are left out of AUROC.
    """
    y = np.asarray(y, dtype=int)
    proba = _softmax(logit_scale * np.asarray(sim, np.float64))
    pred = sim.argmax(1)
    return {"auroc": auroc_over_present_classes(y, proba), "accuracy": float((pred == y).mean()),
            "balanced_accuracy": float(balanced_accuracy_score(y, pred))}


def zero_shot(audio: np.ndarray, y: np.ndarray, prompt_text: np.ndarray, mode: str = "calibrated",
              calibration: Calibration | None = None, logit_scale: float = DEFAULT_LOGIT_SCALE) -> dict:
    """Scores per prompt set and their mean ± std, plus the prompt ensemble (class text = mean over sets).

    `prompt_text`: (K sets, C classes, d) text projections.
    """
    k, c, d = prompt_text.shape
    per_set = [classify(similarity(audio, prompt_text[i], mode, calibration), y, logit_scale) for i in range(k)]
    out: dict = {}
    for m in ("auroc", "accuracy", "balanced_accuracy"):
        values = [r[m] for r in per_set]
        out[m] = {"mean": float(np.mean(values)), "std": float(np.std(values)), "values": values}
    out["ensemble"] = classify(similarity(audio, prompt_text.mean(0), mode, calibration), y, logit_scale)
    return out


def _rows_with_label(manifest: str | os.PathLike, column: str) -> tuple[list[dict], list[int]]:
    from ...datasets.manifest import read_manifest

    rows = read_manifest(manifest, required=("audio_path",))
    if column not in rows[0]:
        raise ValueError(f"{manifest}: no column {column!r} (has: {', '.join(rows[0])})")
    keep = [(n, r) for n, r in enumerate(rows, start=2) if (r.get(column) or "").strip()]
    if not keep:
        raise ValueError(f"{manifest}: column {column!r} is empty in every row")
    return [r for _, r in keep], [n for n, _ in keep]


def run_zeroshot(checkpoint: str | os.PathLike, manifest: str | os.PathLike, label_column: str,
                 out: str | os.PathLike, prompts: str | os.PathLike | Prompts | None = None,
                 logit_scale: float = DEFAULT_LOGIT_SCALE, config: JointSpaceConfig | None = None,
                 **options: Any) -> dict:
    """Zero-shot classify `manifest[label_column]` from class prompts; write zeroshot.json / .csv to `out`.

    `options` are `JointSpaceConfig` fields, overriding `config` (e.g. `cache_dir=...`, `log=...`).
    """
    cfg = JointSpaceConfig.of(config, **options)
    out = Path(out)
    if not isinstance(prompts, Prompts):
        prompts = Prompts.load(prompts) if prompts is not None else Prompts.default(label_column)
    rows, line_numbers = _rows_with_label(manifest, label_column)
    y_all = prompts.class_index([r[label_column] for r in rows], str(manifest), line_numbers)
    paths = [r["audio_path"] for r in rows]
    space = open_joint_space(checkpoint, paths, out, cfg)
    emb, cal = space.audio, space.calibration
    y = y_all[kept_rows(paths, emb.paths)]
    flat = [p for s in prompts.sets for p in s]
    text = project_texts(space.model, space.teacher, flat, space.cache_dir)
    text = text.reshape(len(prompts.sets), len(prompts.classes), -1)
    results = {m: zero_shot(emb.embeddings, y, text, m, cal, logit_scale) for m in cfg.similarities}
    report = {
        "checkpoint": str(checkpoint), "manifest": str(manifest), "label_column": label_column,
        "classes": prompts.classes, "class_counts": {c: int((y == i).sum()) for i, c in enumerate(prompts.classes)},
        "n": int(len(y)), "n_prompt_sets": len(prompts.sets), "prompt_sets": prompts.sets,
        "policy": cfg.policy, "logit_scale": logit_scale, "teacher": space.teacher.key,
        "calibration": cal.meta if cal is not None else None,
        "skipped": [{"audio_path": p, "reason": r} for p, r in zip(emb.skipped_paths, emb.skipped_reasons)],
        "results": results,
    }
    if cal is not None and cal.meta.get("manifest"):
        report["overlap_with_calibration"] = _overlap(cal.meta["manifest"], emb.paths)
    write_json(out / "zeroshot.json", report)
    lines = ["similarity,metric,mean,std,n_prompt_sets,ensemble,n"]
    for m, r in results.items():
        for metric in ("auroc", "accuracy", "balanced_accuracy"):
            lines.append(f"{m},{metric},{r[metric]['mean']:.4f},{r[metric]['std']:.4f},{len(prompts.sets)},"
                         f"{r['ensemble'][metric]:.4f},{len(y)}")
    write_text(out / "zeroshot.csv", "\n".join(lines) + "\n")
    for m, r in results.items():
        cfg.log(f"zero-shot {label_column} [{m}]: AUROC {r['auroc']['mean']:.3f} ± {r['auroc']['std']:.3f}, "
                f"accuracy {r['accuracy']['mean']:.3f} ± {r['accuracy']['std']:.3f} over {len(prompts.sets)} "
                f"prompt sets (ensemble AUROC {r['ensemble']['auroc']:.3f}); n = {len(y)}")
    return report


def _overlap(calibration_manifest: str, paths: Sequence[str]) -> int | None:
    """How many evaluated recordings were also alignment/calibration pairs (should be 0 on a test set)."""
    from ...datasets.manifest import ManifestError, read_manifest

    try:
        seen = {r["audio_path"] for r in read_manifest(calibration_manifest, required=("audio_path",))}
    except (ManifestError, OSError):
        return None
    return int(sum(p in seen for p in paths))
