"""Zero-shot classification in the joint audio-text space of an aligned checkpoint, and the calibration
that makes that space comparable.

    acula calibrate --checkpoint runs/align/acula_final.pt --manifest align.csv
    acula zeroshot  --checkpoint runs/align/acula_final.pt --manifest test.csv --label-column murmur --out runs/zs

Why a calibration: AcuLa trains with linear CKA, which compares the sample x sample Gram matrices of the
audio and text projections. CKA is unchanged when either side is rotated (any orthogonal map) or scaled, so
training leaves the audio projections aligned to the text projections only *up to* a rotation, a scale and
an offset: the raw cosine between `embed_audio(x)` and `embed_text(t)` need not mean anything. If the two
centred Grams agree up to scale, the centred projections differ by exactly such a map, so an orthogonal
Procrustes fit (with centring and an isotropic scale) on the alignment pairs recovers it, using no labels
and no test data. Scores are then cosines in the centred text space. `similarity="raw"` keeps the plain
cosine, which is the right score for InfoNCE-trained models (docs/zeroshot.md).
"""

from __future__ import annotations

import json
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from sklearn.metrics import balanced_accuracy_score

from .._io import atomic_path, sha256_file, write_json, write_text
from ..align.model import AculaModel, load_aligned  # noqa: F401  (load_aligned: part of this module's API)
from ..encoders.checkpoint import Checkpoint
from .probe import auroc

SIMILARITIES = ("calibrated", "raw")
CALIBRATION_FORMAT = "acula-calibration/1"
DEFAULT_LOGIT_SCALE = 100.0  # CLIP's learnt temperature; only multi-class AUROC depends on it


# ------------------------------------------------------------------------------------------------------------
# the aligned model and its teacher


def teacher_for(ck: Checkpoint, model: str | None = None, device: str | torch.device | None = None,
                log: Callable[[str], None] = print):
    """The teacher the checkpoint was aligned to (from its stored key), or `model` with the stored settings.

    Text embeddings from any other teacher, layer, pooling or length land somewhere the text projection
    never saw, so a key that differs from the stored one is reported.
    """
    from ..text.teacher import Teacher

    stored = (ck.config or {}).get("teacher")
    info = json.loads(stored) if isinstance(stored, str) and stored.startswith("{") else {}
    name = model or info.get("model")
    if not name:
        raise ValueError(f"{ck.path}: the checkpoint does not record its teacher; pass it with --teacher")
    if name == "local":
        raise ValueError(f"{ck.path}: the checkpoint was aligned to a teacher from a local folder ({stored}); "
                         "pass that folder with --teacher")
    kwargs = {k: info[k] for k in ("pooling", "max_length", "dtype") if k in info}
    if "layer" in info:
        kwargs["layer"] = info["layer"]
    teacher = Teacher(name, device=device, progress=False, **kwargs)
    if info and json.loads(teacher.key) != info:
        now = json.loads(teacher.key)
        diff = sorted(k for k in set(now) | set(info) if now.get(k) != info.get(k))
        msg = (f"teacher {name!r} differs from the one {ck.path} was aligned to in {', '.join(diff)} "
               f"(stored {', '.join(f'{k}={info.get(k)!r}' for k in diff)}); scores may be meaningless")
        warnings.warn(msg, stacklevel=2)
        log(f"warning: {msg}")
    return teacher


@torch.inference_mode()
def project_audio(model: AculaModel, paths: Sequence[str], policy: str = "acula", batch_size: int = 32,
                  device: str | torch.device = "cpu", progress: bool = False):
    """`Embeddings` whose rows are audio projections (window features averaged, then projected).

    The default policy is the one alignment trained on (the first 8.19 s), so calibration pairs and
    evaluated clips go through the same path. Unreadable files are listed as skips.
    """
    from ..extract import embed_files

    emb = embed_files(model.encoder, list(paths), policy=policy, batch_size=batch_size, progress=progress,
                      device=device)
    model.eval()
    feats = torch.from_numpy(emb.embeddings).to(device)
    emb.embeddings = model.audio_projection(feats).float().cpu().numpy()
    return emb


@torch.inference_mode()
def project_texts(model: AculaModel, teacher, texts: Sequence[str], cache_dir: str | os.PathLike) -> np.ndarray:
    """(N, proj_dim) text projections; teacher embeddings come from (and go to) the on-disk cache."""
    from ..text.cache import embed_texts

    emb = embed_texts(teacher, list(texts), cache_dir)
    model.eval()
    device = next(model.language_projection.parameters()).device
    return model.language_projection(torch.from_numpy(emb).to(device)).float().cpu().numpy()


# ------------------------------------------------------------------------------------------------------------
# calibration


@dataclass
class Calibration:
    """Maps audio projections into the centred text space: `scale * (a - mu_audio) @ rotation`.

    Fitted by orthogonal Procrustes with centring and isotropic scale, i.e. exactly the transforms linear
    CKA is blind to. `meta` records what it was fitted on and how well (`residual` = relative error of the
    fitted map, `residual_identity` = the same without rotation, for comparison).
    """

    mu_audio: np.ndarray
    mu_text: np.ndarray
    rotation: np.ndarray
    scale: float
    meta: dict = field(default_factory=dict)

    @classmethod
    def fit(cls, audio: np.ndarray, text: np.ndarray, **meta) -> "Calibration":
        a, t = np.asarray(audio, np.float64), np.asarray(text, np.float64)
        if a.ndim != 2 or t.ndim != 2 or len(a) != len(t):
            raise ValueError(f"calibration needs paired (N, d) projections, got {a.shape} and {t.shape}")
        if len(a) < 2:
            raise ValueError(f"calibration needs at least 2 alignment pairs, got {len(a)}")
        if not (np.isfinite(a).all() and np.isfinite(t).all()):
            raise ValueError("calibration pairs contain NaN or Inf")
        mu_a, mu_t = a.mean(0), t.mean(0)
        a0, t0 = a - mu_a, t - mu_t
        u, s, vt = np.linalg.svd(a0.T @ t0, full_matrices=False)
        rotation = u @ vt
        norm_a = float((a0**2).sum())
        if norm_a == 0.0:
            raise ValueError("all calibration audio projections are identical; nothing to fit")
        scale = float(s.sum() / norm_a)
        norm_t = math.sqrt(float((t0**2).sum())) or 1.0
        meta = {"n_pairs": int(len(a)),
                "residual": float(np.linalg.norm(scale * a0 @ rotation - t0) / norm_t),
                **({"residual_identity": _identity_residual(a0, t0, norm_t)} if a0.shape[1] == t0.shape[1] else {}),
                **meta}
        return cls(mu_a.astype(np.float32), mu_t.astype(np.float32), rotation.astype(np.float32), scale, meta)

    def map_audio(self, audio: np.ndarray) -> np.ndarray:
        return (self.scale * (np.asarray(audio, np.float32) - self.mu_audio) @ self.rotation).astype(np.float32)

    def centre_text(self, text: np.ndarray) -> np.ndarray:
        return np.asarray(text, np.float32) - self.mu_text

    def save(self, path: str | os.PathLike) -> Path:
        from safetensors.numpy import save_file

        path = Path(path)
        tensors = {"mu_audio": self.mu_audio, "mu_text": self.mu_text, "rotation": self.rotation,
                   "scale": np.array([self.scale], np.float32)}
        meta = {"format": CALIBRATION_FORMAT, "meta": json.dumps(self.meta, default=str)}
        with atomic_path(path) as tmp:
            save_file({k: np.ascontiguousarray(v, np.float32) for k, v in tensors.items()}, str(tmp), metadata=meta)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Calibration":
        from safetensors import safe_open

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: calibration file not found")
        try:
            with safe_open(str(path), framework="np") as f:
                header = f.metadata() or {}
                t = {k: f.get_tensor(k) for k in f.keys()}
        except Exception as e:
            raise ValueError(f"{path}: cannot read calibration file (truncated or corrupt?): {e}") from e
        if header.get("format") != CALIBRATION_FORMAT:
            raise ValueError(f"{path}: format {header.get('format')!r}, expected {CALIBRATION_FORMAT!r}")
        missing = [k for k in ("mu_audio", "mu_text", "rotation", "scale") if k not in t]
        if missing:
            raise ValueError(f"{path}: calibration lacks {', '.join(missing)}")
        return cls(t["mu_audio"], t["mu_text"], t["rotation"], float(t["scale"][0]), json.loads(header["meta"]))

    def check_fits(self, model: AculaModel, checkpoint_sha256: str | None, where: str = "") -> None:
        """Refuse a calibration fitted for another checkpoint (or another head width)."""
        d_a = model.audio_projection.layers[-1].out_features
        d_t = model.language_projection.layers[-1].out_features
        if self.rotation.shape != (d_a, d_t):
            raise ValueError(f"{where}: calibration maps {self.rotation.shape[0]}-d to {self.rotation.shape[1]}-d, "
                             f"the checkpoint's projections are {d_a}-d and {d_t}-d")
        stored = self.meta.get("checkpoint_sha256")
        if checkpoint_sha256 and stored and stored != checkpoint_sha256:
            raise ValueError(f"{where}: calibration was fitted for another checkpoint "
                             f"({self.meta.get('checkpoint')}, sha256 {stored[:12]}); refit it with acula calibrate")


def _identity_residual(a0: np.ndarray, t0: np.ndarray, norm_t: float) -> float:
    s = float((a0 * t0).sum() / max((a0**2).sum(), 1e-30))  # best scale without rotation
    return float(np.linalg.norm(s * a0 - t0) / norm_t)


def default_calibration_path(checkpoint_path: str | os.PathLike) -> Path:
    p = Path(checkpoint_path)
    return p.with_name(f"{p.stem}.calibration.safetensors")


def fit_calibration(model: AculaModel, ck: Checkpoint, teacher, manifest: str | os.PathLike,
                    cache_dir: str | os.PathLike, policy: str = "acula", exclude_subjects: set[str] | None = None,
                    batch_size: int = 32, device: str | torch.device = "cpu", progress: bool = False,
                    text_column: str = "Gen_Report", log: Callable[[str], None] = print) -> Calibration:
    """Fit on the alignment pairs of `manifest` (audio_path, Gen_Report): labels are never read."""
    from ..datasets.manifest import read_manifest

    rows = read_manifest(manifest, required=("audio_path", text_column))
    if exclude_subjects:
        rows = [r for r in rows if r.get("subject_id", "") not in exclude_subjects]
    emb = project_audio(model, [r["audio_path"] for r in rows], policy, batch_size, device, progress)
    by_path = {r["audio_path"]: r for r in rows}
    if emb.skipped_paths:
        log(f"calibration: {len(emb.skipped_paths)} unreadable recordings left out "
            f"(e.g. {emb.skipped_paths[0]}: {emb.skipped_reasons[0]})")
    text = project_texts(model, teacher, [by_path[p][text_column] for p in emb.paths], cache_dir)
    cal = Calibration.fit(emb.embeddings, text, checkpoint=str(ck.path),
                          checkpoint_sha256=sha256_file(ck.path) if ck.path and Path(ck.path).is_file() else None,
                          manifest=str(manifest), policy=policy, teacher=teacher.key)
    log(f"calibration: {cal.meta['n_pairs']} alignment pairs, relative residual {cal.meta['residual']:.3f} "
        f"(without rotation {cal.meta.get('residual_identity', float('nan')):.3f})")
    return cal


def resolve_calibration(model: AculaModel, ck: Checkpoint, teacher, calibration: str | os.PathLike | None,
                        align_manifest: str | os.PathLike | None, cache_dir: str | os.PathLike,
                        out: str | os.PathLike | None = None, policy: str = "acula", batch_size: int = 32,
                        device: str | torch.device = "cpu", log: Callable[[str], None] = print) -> Calibration:
    """A given file, else a fit on `align_manifest` (saved to OUT), else `<checkpoint>.calibration.safetensors`."""
    sha = sha256_file(ck.path) if ck.path and Path(ck.path).is_file() else None
    if calibration is not None:
        cal = Calibration.load(calibration)
        cal.check_fits(model, sha, str(calibration))
        return cal
    if align_manifest is not None:
        cal = fit_calibration(model, ck, teacher, align_manifest, cache_dir, policy, batch_size=batch_size,
                              device=device, log=log)
        if out is not None:
            cal.save(Path(out) / "calibration.safetensors")
        return cal
    beside = default_calibration_path(ck.path) if ck.path else None
    if beside is not None and beside.is_file():
        cal = Calibration.load(beside)
        cal.check_fits(model, sha, str(beside))
        log(f"calibration: {beside}")
        return cal
    raise ValueError(f"no calibration for {ck.path}: run `acula calibrate --checkpoint {ck.path} --manifest "
                     "ALIGN.csv` (the alignment pairs), or pass --align-manifest ALIGN.csv or --calibration FILE; "
                     "or score with --similarity raw")


# ------------------------------------------------------------------------------------------------------------
# similarity


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(Na, Nb) cosine similarities; a zero vector has similarity 0 to everything."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    return a @ b.T


def similarity(audio: np.ndarray, text: np.ndarray, mode: str = "calibrated",
               calibration: Calibration | None = None) -> np.ndarray:
    """(N_audio, N_text) scores: cosine after calibration, or the plain cosine of the projections."""
    if mode == "raw":
        return cosine(audio, text)
    if mode == "calibrated":
        if calibration is None:
            raise ValueError("similarity='calibrated' needs a Calibration")
        return cosine(calibration.map_audio(audio), calibration.centre_text(text))
    raise ValueError(f"similarity must be one of {SIMILARITIES}, got {mode!r}")


def similarity_modes(text: str) -> tuple[str, ...]:
    return SIMILARITIES if text == "both" else (text,)


# ------------------------------------------------------------------------------------------------------------
# prompts and zero-shot classification

DEFAULT_PROMPTS: dict[str, dict] = {
    "murmur": {"classes": {
        "0": ["A heart sound recording with no murmur.",
              "Auscultation reveals normal heart sounds without a murmur.",
              "Murmur absent.",
              "The heart sounds are normal; no murmur is heard."],
        "1": ["A heart sound recording with a murmur.",
              "Auscultation reveals a systolic murmur.",
              "A murmur is present.",
              "A harsh murmur is heard over the heart valves."],
    }},
    "crackles": {"classes": {
        "0": ["A lung sound recording without crackles.",
              "No crackles are heard on auscultation.",
              "Crackles are absent.",
              "Clear breath sounds with no crackles."],
        "1": ["A lung sound recording with crackles.",
              "Crackles are heard on auscultation.",
              "Crackles are present.",
              "Fine or coarse crackles are audible over the chest."],
    }},
    "wheezes": {"classes": {
        "0": ["A lung sound recording without wheezes.",
              "No wheezes are heard on auscultation.",
              "Wheezes are absent.",
              "Clear breath sounds with no wheezing."],
        "1": ["A lung sound recording with wheezes.",
              "Wheezes are heard on auscultation.",
              "Wheezes are present.",
              "Musical wheezing is audible over the chest."],
    }},
}


@dataclass
class Prompts:
    """`sets[k][c]` is the k-th prompt of class `classes[c]`: one prompt set = one prompt per class."""

    classes: list[str]
    sets: list[list[str]]
    label_column: str | None = None

    @classmethod
    def from_dict(cls, d: dict, where: str = "prompts") -> "Prompts":
        classes = d.get("classes") if isinstance(d, dict) else None
        if not isinstance(classes, dict) or len(classes) < 2:
            raise ValueError(f'{where}: expected {{"classes": {{"<label value>": ["prompt", ...], ...}}}} '
                             f"with at least 2 classes")
        names = [str(k) for k in classes]
        lists = []
        for k, v in classes.items():
            v = [v] if isinstance(v, str) else v
            if not isinstance(v, list) or not v or not all(isinstance(p, str) and p.strip() for p in v):
                raise ValueError(f"{where}: class {k!r} needs a non-empty list of non-empty prompt strings")
            lists.append(v)
        counts = {n: len(v) for n, v in zip(names, lists)}
        if len(set(counts.values())) != 1:
            raise ValueError(f"{where}: every class needs the same number of prompts (one per prompt set), "
                             f"got {counts}")
        sets = [[v[k] for v in lists] for k in range(len(lists[0]))]
        return cls(names, sets, d.get("label_column"))

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Prompts":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: prompts file not found")
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON ({e})") from None
        return cls.from_dict(d, str(path))

    @classmethod
    def default(cls, label_column: str) -> "Prompts":
        if label_column not in DEFAULT_PROMPTS:
            raise ValueError(f"no built-in prompts for label column {label_column!r} (built in: "
                             f"{', '.join(DEFAULT_PROMPTS)}); pass --prompts FILE (docs/zeroshot.md)")
        return cls.from_dict(DEFAULT_PROMPTS[label_column], f"built-in prompts for {label_column}")

    def class_index(self, values: Sequence[str], where: str = "manifest",
                    rows: Sequence[int] | None = None) -> np.ndarray:
        """Label strings -> class indices; numbers match numerically ("1" == "1.0")."""
        def key(v: str):
            try:
                return float(v)
            except ValueError:
                return v.strip()

        index = {key(c): i for i, c in enumerate(self.classes)}
        out = np.empty(len(values), dtype=int)
        for i, v in enumerate(values):
            if key(v) not in index:
                row = rows[i] if rows is not None else i
                raise ValueError(f"{where}: row {row}: label {v!r} is none of the prompt classes "
                                 f"{self.classes}")
            out[i] = index[key(v)]
        return out


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


# ------------------------------------------------------------------------------------------------------------
# end to end


def kept_rows(paths: Sequence[str], kept: Sequence[str]) -> np.ndarray:
    """Input indices of the embedded rows (`embed_files` keeps input order and drops skips)."""
    idx, j = [], 0
    for i, p in enumerate(paths):
        if j < len(kept) and kept[j] == p:
            idx.append(i)
            j += 1
    if j != len(kept):
        raise RuntimeError("embedded paths are not a subsequence of the inputs")
    return np.array(idx, dtype=int)


def _rows_with_label(manifest: str | os.PathLike, column: str) -> tuple[list[dict], list[int]]:
    from ..datasets.manifest import read_manifest

    rows = read_manifest(manifest, required=("audio_path",))
    if column not in rows[0]:
        raise ValueError(f"{manifest}: no column {column!r} (has: {', '.join(rows[0])})")
    keep = [(n, r) for n, r in enumerate(rows, start=2) if (r.get(column) or "").strip()]
    if not keep:
        raise ValueError(f"{manifest}: column {column!r} is empty in every row")
    return [r for _, r in keep], [n for n, _ in keep]


def joint_space(checkpoint, paths: list[str], out: Path, similarities: Sequence[str], calibration, align_manifest,
                teacher, cache_dir, policy: str, batch_size: int, device: str, trust_checkpoint: bool,
                progress: bool, log: Callable[[str], None]):
    """What zero-shot and retrieval share: the aligned model, its teacher, the text cache, the calibration
    (when a calibrated similarity is asked for) and the audio projections of `paths`."""
    for m in similarities:
        if m not in SIMILARITIES:
            raise ValueError(f"similarity must be one of {SIMILARITIES}, got {m!r}")
    model, ck = load_aligned(checkpoint, trust_checkpoint, device)
    tch = teacher_for(ck, teacher, device, log)
    cache_dir = Path(cache_dir or out / "text_cache")
    cal = None
    if "calibrated" in similarities:
        cal = resolve_calibration(model, ck, tch, calibration, align_manifest, cache_dir, out, policy,
                                  batch_size, device, log)
    return model, tch, cache_dir, cal, project_audio(model, paths, policy, batch_size, device, progress)


def run_zeroshot(checkpoint: str | os.PathLike, manifest: str | os.PathLike, label_column: str,
                 out: str | os.PathLike, prompts: str | os.PathLike | Prompts | None = None,
                 similarities: Sequence[str] = ("calibrated",), calibration: str | os.PathLike | None = None,
                 align_manifest: str | os.PathLike | None = None, teacher: str | None = None,
                 cache_dir: str | os.PathLike | None = None, policy: str = "acula",
                 logit_scale: float = DEFAULT_LOGIT_SCALE, batch_size: int = 32, device: str = "cpu",
                 trust_checkpoint: bool = False, progress: bool = False,
                 log: Callable[[str], None] = print) -> dict:
    """Zero-shot classify `manifest[label_column]` from class prompts; write zeroshot.json / .csv to `out`."""
    out = Path(out)
    if not isinstance(prompts, Prompts):
        prompts = Prompts.load(prompts) if prompts is not None else Prompts.default(label_column)
    rows, line_numbers = _rows_with_label(manifest, label_column)
    y_all = prompts.class_index([r[label_column] for r in rows], str(manifest), line_numbers)
    paths = [r["audio_path"] for r in rows]
    model, tch, cache_dir, cal, emb = joint_space(checkpoint, paths, out, similarities, calibration, align_manifest,
                                                  teacher, cache_dir, policy, batch_size, device,
                                                  trust_checkpoint, progress, log)
    y = y_all[kept_rows(paths, emb.paths)]
    flat = [p for s in prompts.sets for p in s]
    text = project_texts(model, tch, flat, cache_dir).reshape(len(prompts.sets), len(prompts.classes), -1)
    results = {m: zero_shot(emb.embeddings, y, text, m, cal, logit_scale) for m in similarities}
    report = {
        "checkpoint": str(checkpoint), "manifest": str(manifest), "label_column": label_column,
        "classes": prompts.classes, "class_counts": {c: int((y == i).sum()) for i, c in enumerate(prompts.classes)},
        "n": int(len(y)), "n_prompt_sets": len(prompts.sets), "prompt_sets": prompts.sets,
        "policy": policy, "logit_scale": logit_scale, "teacher": tch.key,
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
        log(f"zero-shot {label_column} [{m}]: AUROC {r['auroc']['mean']:.3f} ± {r['auroc']['std']:.3f}, "
            f"accuracy {r['accuracy']['mean']:.3f} ± {r['accuracy']['std']:.3f} over {len(prompts.sets)} prompt "
            f"sets (ensemble AUROC {r['ensemble']['auroc']:.3f}); n = {len(y)}")
    return report


def _overlap(calibration_manifest: str, paths: Sequence[str]) -> int | None:
    """How many evaluated recordings were also alignment/calibration pairs (should be 0 on a test set)."""
    from ..datasets.manifest import ManifestError, read_manifest

    try:
        seen = {r["audio_path"] for r in read_manifest(calibration_manifest, required=("audio_path",))}
    except (ManifestError, OSError):
        return None
    return int(sum(p in seen for p in paths))

