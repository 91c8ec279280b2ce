"""`acula experiment real-heart`: AcuLa on real heart-valve recordings (Yaseen, Son and Kwon 2018).

The synthetic demo shows the loop runs; this asks whether alignment helps on real sounds with a
real pretrained encoder. The data are 800 short phonocardiograms labelled MR / MS / MVP / N with
no patient ids, so:

1. files (not patients: none are published) are split 70/30, stratified, with a fixed seed;
   alignment and probe training see the train part only (asserted);
2. each train file gets a report written from its label: the diagnosis plus its textbook
   auscultation features, stated as textbook facts (the data hold no per-recording findings),
   phrased differently per alignment seed;
3. from one initialisation (a checkpoint, or a seeded random init), the same steps of MAM only
   (baseline) and MAM + CKA to the teacher's report embeddings (aligned);
4. linear probes (normal vs abnormal, 4-class) and prompt-based zero-shot classification of the
   test part, for the initial, baseline and aligned encoders.

CPU budget: each clip becomes one fixed window once; YAMNet alignment steps see one random
0.975-s patch per clip. `freeze_layers` keeps a YAMNet's leading layers frozen in every arm, so their
activations are computed once and shared by all arms and seeds (cheaper, less faithful).
"""

from __future__ import annotations

import argparse
import copy
import csv
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from sklearn.model_selection import train_test_split
from tqdm.auto import tqdm

from .._io import atomic_path, sha256_file, write_json, write_text
from ..align.model import AculaModel
from ..align.trainer import AlignmentData, TrainConfig, Trainer, seed_everything
from ..audio import frontend
from ..audio.io import load_audio
from ..data.manifest import write_manifest
from ..demo import features, table
from ..encoders import create
from ..evaluate import zeroshot as zs
from ..evaluate.probe import probe_over_seeds
from ..text.cache import embed_texts
from ..text.reports._base import Phrases
from ..text.teacher import Teacher

NORMAL = "N"
NAMES = {  # label -> ways to name the diagnosis in a report
    "MR": ("mitral regurgitation", "mitral valve regurgitation"),
    "MS": ("mitral stenosis", "mitral valve stenosis"),
    "MVP": ("mitral valve prolapse", "prolapse of the mitral valve"),
    "N": ("no valve disease", "a normal heart"),
}
# Textbook auscultation features of each diagnosis (not findings read off the recording).
FEATURES = {
    "MR": ("a holosystolic, blowing murmur best heard at the apex that radiates to the axilla",
           "a blowing pansystolic apical murmur radiating to the left axilla"),
    "MS": ("a low-pitched mid-diastolic rumble preceded by an opening snap",
           "an opening snap followed by a low-pitched rumbling diastolic murmur"),
    "MVP": ("a mid-systolic click, sometimes followed by a late-systolic murmur",
            "a mid-systolic click with or without a late systolic murmur"),
    "N": ("normal first and second heart sounds (S1 and S2) without a murmur",
          "crisp S1 and S2 with no murmur, click or added sound"),
}
LABELS = tuple(NAMES)
# Class prompts for zero-shot classification, one dict per prompt set, worded unlike the reports.
PROMPT_SETS = (
    {"MR": "mitral regurgitation", "MS": "mitral stenosis", "MVP": "mitral valve prolapse", "N": "normal heart"},
    {"MR": "Heart sounds of a patient with mitral regurgitation.", "MS": "Heart sounds of a patient with mitral "
     "stenosis.", "MVP": "Heart sounds of a patient with mitral valve prolapse.", "N": "Heart sounds of a healthy "
     "person."},
    {"MR": "holosystolic blowing murmur at the apex radiating to the axilla", "MS": "low-pitched diastolic rumble "
     "with an opening snap", "MVP": "mid-systolic click and late systolic murmur", "N": "normal S1 and S2, no murmur"},
    {"MR": "A leaking mitral valve.", "MS": "A narrowed mitral valve.", "MVP": "A floppy mitral valve that bulges "
     "into the atrium.", "N": "A healthy heart with normal valves."},
    {"MR": "Auscultation: systolic murmur of mitral regurgitation.", "MS": "Auscultation: diastolic murmur of mitral "
     "stenosis.", "MVP": "Auscultation: click of mitral valve prolapse.", "N": "Auscultation: normal heart sounds."},
)
TASKS = (("normal_vs_abnormal", "AUROC", "normal (N) vs abnormal (MR, MS, MVP)"),
         ("diagnosis_4class", "AUROC", "MR / MS / MVP / N, macro one-vs-rest"))
ZERO_SHOT_TASKS = TASKS + (("accuracy_4class", "accuracy", "MR / MS / MVP / N, most similar prompt (chance 0.25)"),)
ARMS = ("initial", "baseline", "aligned")
LABEL_CONTROL = "label_cka"  # MAM + CKA to one-hot labels: what alignment gains without the language model


@dataclass
class RealHeartConfig:
    data: Path
    out: Path
    encoder: str = "yamnet"
    checkpoint: str | None = None  # None = random initialisation, seeded per alignment seed
    preset: str | None = None
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    probe_seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    split_seed: int = 0
    test_fraction: float = 0.3
    window_seconds: float = 4.0  # every clip -> one window this long (the data are 1.2-4 s)
    crop_seconds: float | None = None  # alignment sees a random crop this long per clip and step
    freeze_layers: int = 0  # leading backbone layers kept frozen in every arm (YAMNet-style encoders)
    teacher: str = "minilm"
    teacher_layer: int = -1
    probe_lr: float = 1e-2  # OPERA uses 1e-4, which underfits 400 clips; chosen on the train part, see the docs
    probe_epochs: int = 64
    threads: int = 1  # torch threads; on a shared CPU one thread cost 2-10x less CPU time than two
    label_control: bool = True  # also train the label_cka arm
    keep_checkpoints: bool = False
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        epochs=2, batch_size=32, lr=3e-4, warmup_steps=5, weight_decay=0.01))
    cache_dir: Path | None = None


# Per-encoder settings that keep a run inside 30 CPU minutes (see docs/real-heart.md); flags override them.
ENCODER_DEFAULTS = {
    "yamnet": dict(window_seconds=4.0, crop_seconds=0.975, freeze_layers=0, epochs=4, lr=1e-4),  # 1 patch/step
    # 4.064 s = 128 log-mel frames: a length the published OPERA-GT Swin decoder accepts (multiples of 64)
    "opera-gt": dict(window_seconds=4.064, crop_seconds=None, freeze_layers=0, epochs=8, lr=5e-4),
}


# ---- data --------------------------------------------------------------------------------------


def read_labels(data: Path) -> list[dict]:
    """Rows {path (absolute), file (as listed), label} of `data/labels.csv` (columns path,label)."""
    path = Path(data) / "labels.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: --data must be a folder holding labels.csv (columns path,label)")
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = {"path", "label"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: missing column(s) {sorted(missing)}; found {reader.fieldnames}")
        rows, seen = [], set()
        for n, r in enumerate(reader, start=2):
            file, label = (r["path"] or "").strip(), (r["label"] or "").strip()
            if label not in NAMES:
                raise ValueError(f"{path}: row {n}: label {label!r}, expected one of {', '.join(LABELS)}")
            audio = (path.parent / file).resolve()
            if not file or not audio.is_file():
                raise FileNotFoundError(f"{path}: row {n}: audio file {file!r} not found at {audio}")
            if file in seen:
                raise ValueError(f"{path}: row {n}: {file} is listed twice")
            seen.add(file)
            rows.append({"path": str(audio), "file": file, "label": label})
    counts = {lab: sum(r["label"] == lab for r in rows) for lab in LABELS}
    if min(counts.values()) < 4:
        raise ValueError(f"{path}: every label needs at least 4 files for a stratified split, got {counts}")
    return rows


def split_files(labels: list[str], test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified file-level split (sorted train and test indices). No patient ids exist to group by."""
    idx = np.arange(len(labels))
    train, test = train_test_split(idx, test_size=test_fraction, stratify=labels, random_state=seed)
    return np.sort(train), np.sort(test)


def clip_input(path: str, encoder, seconds: float) -> np.ndarray:
    """One fixed window per clip: its first `seconds`, repeat-padded when shorter (OPERA's padding,
    so no window is part silence and clip length does not leak into the features), through the
    encoder's front end."""
    c = encoder.contract
    n = int(round(seconds * c.sample_rate))
    wave = load_audio(path, sample_rate=c.sample_rate, max_seconds=seconds)
    wave = wave[:n] if wave.size >= n else frontend.repeat_pad(wave, wave, n)
    x = torch.from_numpy(np.ascontiguousarray(wave[None], dtype=np.float32))
    if c.frontend == "logmel":
        x = frontend.logmel(x, sample_rate=c.sample_rate)
    encoder.check_input(x)
    return x[0].numpy()


def report(label: str, record_id: str, seed: int) -> str:
    """A report from the label alone; the features are what the diagnosis typically sounds like."""
    ph = Phrases(seed, record_id)
    name, feature = ph.pick(*NAMES[label]), ph.pick(*FEATURES[label])
    head = ph.pick("Heart sound recording.", "Phonocardiogram.", "Cardiac auscultation recording.")
    if label == NORMAL:
        dx = ph.pick("Label: normal, no valve disease.", "Diagnosis: normal heart sounds.",
                     f"The recording is labelled normal ({name}).")
        fact = ph.pick(f"A normal heart typically gives {feature}.",
                       f"Normal auscultation is expected to give {feature}.")
    else:
        dx = ph.pick(f"Diagnosis: {name}.", f"The recording is labelled {name}.", f"Label: {name}.")
        fact = ph.pick(f"{name[0].upper() + name[1:]} typically causes {feature}.",
                       f"The textbook finding in {name} is {feature}.",
                       f"{name[0].upper() + name[1:]} is classically heard as {feature}.")
    return f"{head} {dx} {fact}"


# ---- encoders and features ---------------------------------------------------------------------


def make_encoder(name: str, checkpoint: str | None, preset: str | None):
    """YAMNet reads `.tflite` / converted `.safetensors` weights itself; others go through the loader."""
    opts = {"preset": preset} if preset else {}
    if name == "yamnet" and checkpoint and Path(checkpoint).suffix in (".tflite", ".safetensors"):
        return create(name, weights=checkpoint, **opts)
    return create(name, checkpoint=checkpoint, **opts)


def freeze(encoder, n_layers: int) -> None:
    if n_layers <= 0:
        return
    backbone = getattr(encoder, "backbone", None)
    if not isinstance(backbone, torch.nn.Sequential) or n_layers >= len(backbone):
        have = len(backbone) if isinstance(backbone, torch.nn.Sequential) else 0
        raise ValueError(f"--freeze-layers {n_layers}: {encoder.name} has {have} sequential backbone layers "
                         "(freezing needs a YAMNet-style encoder and must leave at least one layer trainable)")
    backbone[:n_layers].requires_grad_(False)


class FrozenTrunk:
    """Activations of the frozen leading layers of a YAMNet-style encoder, computed once.

    Every arm and seed shares those layers, so a clip's features after training need only the
    trainable top: `features(encoder)` equals `encoder.forward_feature` at a fraction of the cost.
    """

    def __init__(self, encoder, x: np.ndarray, n_layers: int, batch: int = 16):
        self.n_layers = n_layers
        trunk = encoder.backbone[:n_layers]
        self.state = {k: v.detach().clone() for k, v in trunk.state_dict().items()}
        encoder.eval()
        acts = []
        with torch.inference_mode():
            for i in tqdm(range(0, len(x), batch), desc=f"frozen layers 1-{n_layers}", unit="batch"):
                patches = encoder.frontend.patches(torch.from_numpy(x[i:i + batch]))
                b, p = patches.shape[:2]
                h = trunk(patches.flatten(0, 1)[:, None])
                acts.append(h.view(b, p, *h.shape[1:]))
        self.acts = torch.cat(acts)  # (N, patches, C, H, W)

    def check(self, encoder) -> None:
        for k, v in encoder.backbone[:self.n_layers].state_dict().items():
            if not torch.equal(v, self.state[k]):
                raise RuntimeError(f"frozen layer weight {k} changed during training")

    @torch.inference_mode()
    def features(self, encoder, batch: int = 64) -> np.ndarray:
        self.check(encoder)
        encoder.eval()
        top = encoder.backbone[self.n_layers:]
        out = []
        for i in range(0, len(self.acts), batch):
            h = self.acts[i:i + batch]
            n, p = h.shape[:2]
            out.append(top(h.flatten(0, 1)).mean(dim=(2, 3)).view(n, p, -1).mean(1))
        return torch.cat(out).numpy()


class CroppedData(AlignmentData):
    """A random `length`-long crop (axis 1) of each clip every time it is drawn: cheaper steps, more views."""

    def __init__(self, inputs: np.ndarray, text_emb: np.ndarray, length: int | None, seed: int):
        super().__init__(inputs, text_emb)
        if length is not None and not 0 < length <= inputs.shape[1]:
            raise ValueError(f"crop of {length} is outside the window of {inputs.shape[1]}")
        self.length = length
        self.rng = np.random.default_rng([seed, 7])

    def batch(self, idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        x, t = super().batch(idx)
        if self.length is None or self.length == x.shape[1]:
            return x, t
        starts = self.rng.integers(0, x.shape[1] - self.length + 1, size=len(idx))
        return torch.stack([x[i, s:s + self.length] for i, s in enumerate(starts)]), t


# ---- evaluation --------------------------------------------------------------------------------


def task_labels(labels: np.ndarray) -> dict[str, np.ndarray]:
    return {"normal_vs_abnormal": (labels != NORMAL).astype(int),
            "diagnosis_4class": np.searchsorted(np.array(LABELS), labels)}


def run_probes(feats: np.ndarray, labels: np.ndarray, train: np.ndarray, test: np.ndarray, cfg) -> dict:
    out = {}
    for name, y in task_labels(labels).items():
        out[name] = probe_over_seeds(feats[train], y[train], feats[test], y[test], task="classification",
                                     seeds=tuple(cfg.probe_seeds), lr=cfg.probe_lr, epochs=cfg.probe_epochs)
    return out


def zero_shot(audio_train: np.ndarray, text_train: np.ndarray, audio_test: np.ndarray,
              prompts: list[np.ndarray], labels_test: np.ndarray, mode: str = "calibrated") -> dict:
    """Classify test clips from class prompts alone, one score per prompt set (`acula.evaluate.zeroshot`).

    CKA ignores rotations, so aligned audio projections match their reports only up to one: the
    "calibrated" scorer first fits an orthogonal Procrustes map on the alignment pairs (train files
    and their reports; never a prompt or a test clip). "raw" is the plain cosine. Normal vs abnormal
    ranks by the best abnormal-class similarity minus the normal one.
    """
    cal = zs.Calibration.fit(audio_train, text_train) if mode == "calibrated" else None
    y = task_labels(labels_test)
    n = LABELS.index(NORMAL)
    per_set = []
    for p in prompts:
        sim = zs.similarity(audio_test, p, mode, cal)
        binary = np.stack([sim[:, n], np.delete(sim, n, axis=1).max(1)], axis=1)
        four = zs.classify(sim, y["diagnosis_4class"])
        per_set.append({"normal_vs_abnormal": zs.classify(binary, y["normal_vs_abnormal"])["auroc"],
                        "diagnosis_4class": four["auroc"], "accuracy_4class": four["accuracy"]})
    return {k: {"mean": float(np.mean([v[k] for v in per_set])), "std": float(np.std([v[k] for v in per_set])),
                "values": [v[k] for v in per_set]} for k in per_set[0]}


@torch.inference_mode()
def heads(model: AculaModel, x: np.ndarray, project) -> np.ndarray:
    model.eval()
    return project(torch.from_numpy(np.asarray(x, dtype=np.float32))).numpy()


# ---- the experiment ----------------------------------------------------------------------------


def run(cfg: RealHeartConfig) -> dict:
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    try:
        return _run(cfg)
    finally:
        torch.set_num_threads(threads)


def _run(cfg: RealHeartConfig) -> dict:
    t0 = time.time()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    cache_dir = Path(cfg.cache_dir or out / "text_cache")

    # 1. files and the file-level split; only train files are ever aligned on or probe-trained on
    rows = read_labels(Path(cfg.data))
    labels = np.array([r["label"] for r in rows])
    train, test = split_files(list(labels), cfg.test_fraction, cfg.split_seed)
    test_files = {rows[i]["path"] for i in test}
    assert not {rows[i]["path"] for i in train} & test_files, "a test file is in the train part"
    is_test = np.isin(np.arange(len(rows)), test)
    write_manifest(out / "split.csv", [{"path": r["file"], "label": r["label"], "part": "test" if t else "train"}
                                       for r, t in zip(rows, is_test)])

    # 2. encoder inputs once; for a frozen trunk, its activations once
    pretrained = cfg.checkpoint is not None
    base = make_encoder(cfg.encoder, cfg.checkpoint, cfg.preset)
    x_all = np.stack([clip_input(r["path"], base, cfg.window_seconds)
                      for r in tqdm(rows, desc="inputs", unit="clip")])
    crop = None if cfg.crop_seconds is None else int(round(cfg.crop_seconds * base.contract.sample_rate))
    if crop is not None and base.contract.frontend == "logmel":
        crop = frontend.frames_for(crop)
    try:  # fail now, not after the teacher and the first arm, if MAM cannot take this input length
        with torch.no_grad():
            base.forward_mam(torch.from_numpy(x_all[:2, :crop]))
    except ValueError as e:
        raise ValueError(f"{e}; change --window-seconds / --crop-seconds") from None
    teacher = Teacher(cfg.teacher, layer=cfg.teacher_layer)
    prompts = [embed_texts(teacher, [s[lab] for lab in LABELS], cache_dir) for s in PROMPT_SETS]

    arms = ARMS + ((LABEL_CONTROL,) if cfg.label_control else ())
    per_seed: dict[str, list[dict]] = {arm: [] for arm in arms}
    zero: dict[str, list[dict]] = {"initial": [], "baseline": [], "aligned": [], "aligned_uncalibrated": []}
    trunk, initial_result, histories, saved = None, None, {}, {}
    for seed in cfg.seeds:
        # 3. this seed's reports (train files only) and the shared initialisation
        reports = [report(rows[i]["label"], rows[i]["file"], seed) for i in train]
        align_rows = [{"audio_path": rows[i]["path"], "label": rows[i]["label"], "Gen_Report": rep}
                      for i, rep in zip(train, reports)]
        assert not {r["audio_path"] for r in align_rows} & test_files, "a test file leaked into alignment"
        write_manifest(out / f"alignment-seed{seed}.csv", align_rows)
        text_emb = embed_texts(teacher, reports, cache_dir)
        seed_everything(seed)  # parts a checkpoint lacks (random init, a new MAM head) are seeded too
        init = make_encoder(cfg.encoder, cfg.checkpoint, cfg.preset)
        freeze(init, cfg.freeze_layers)
        if cfg.freeze_layers and (trunk is None or not pretrained):
            trunk = FrozenTrunk(init, x_all, cfg.freeze_layers)
        # small batches: a YAMNet batch of 64 clips allocates ~200 MB per layer and spends more time in the kernel
        feats_of = (lambda enc: trunk.features(enc)) if cfg.freeze_layers else (lambda enc: features(enc, x_all, 8))

        # 4. the initial encoder: the same for every seed when pretrained
        if initial_result is None or not pretrained:
            f0 = saved[f"initial_seed{seed}"] = feats_of(init)
            initial_result = (run_probes(f0, labels, train, test, cfg),
                              zero_shot(f0[train], text_emb, f0[test], prompts, labels[test]))
        per_seed["initial"].append(initial_result[0])
        zero["initial"].append(initial_result[1])

        # 5. baseline (MAM only), aligned (MAM + CKA to the reports) and, as a control, MAM + CKA to one-hot
        # labels: the same init, heads, crops and steps, so the arms differ only in the alignment target
        lam = cfg.train.lambda_align or 1.0
        onehot = np.eye(len(LABELS), dtype=np.float32)[task_labels(labels[train])["diagnosis_4class"]]
        plan = [("baseline", 0.0, text_emb), ("aligned", lam, text_emb)]
        if cfg.label_control:
            plan.append((LABEL_CONTROL, lam, onehot))
        for arm, weight, targets in plan:
            model, histories[f"{arm}-seed{seed}"] = train_arm(
                init, targets, CroppedData(x_all[train], targets, crop, seed),
                replace(cfg.train, lambda_align=weight, seed=seed), out / "runs" / f"{arm}-seed{seed}",
                {"teacher": teacher.key, "arm": arm, "experiment": "real-heart"}, cfg.keep_checkpoints)
            f = saved[f"{arm}_seed{seed}"] = feats_of(model.encoder)
            per_seed[arm].append(run_probes(f, labels, train, test, cfg))
            if arm == LABEL_CONTROL:
                continue  # its text side is a one-hot label, so there is nothing to prompt
            a, t = heads(model, f, model.audio_projection), heads(model, text_emb, model.language_projection)
            p = [heads(model, pe, model.language_projection) for pe in prompts]
            zero[arm].append(zero_shot(a[train], t, a[test], p, labels[test]))
            if arm == "aligned":
                zero["aligned_uncalibrated"].append(zero_shot(a[train], t, a[test], p, labels[test], mode="raw"))

    counts = {lab: {"train": int((labels[train] == lab).sum()), "test": int((labels[test] == lab).sum())}
              for lab in LABELS}
    results = {
        "tasks": summarise(per_seed, n_train=len(train), n_test=len(test)),
        "zero_shot": {
            "tasks": summarise(zero, ZERO_SHOT_TASKS, n_train=len(train), n_test=len(test)),
            "prompt_sets": [dict(s) for s in PROMPT_SETS],
            "scorer": "acula.evaluate.zeroshot: cosine to class-prompt embeddings after a Calibration (centring, "
                      "orthogonal Procrustes, isotropic scale) fit on the alignment pairs; initial arm: raw encoder "
                      "features to raw teacher embeddings, other arms: through the projection heads; "
                      "aligned_uncalibrated: plain cosine through the heads. 4-class AUROC from softmax(100 cos); "
                      "std over alignment seeds of the mean over prompt sets (within_seed_std: over prompt sets)",
        },
        "wall_seconds": time.time() - t0,
        "seeds": list(cfg.seeds),
        "probe_seeds": list(cfg.probe_seeds),
        "encoder": f"{cfg.encoder}:{cfg.preset or 'default'}",
        "initial": (f"checkpoint {Path(cfg.checkpoint).name} (sha256 {sha256_file(cfg.checkpoint)[:16]})"
                    if pretrained else "random initialisation, seeded by the alignment seed"),
        "teacher": cfg.teacher,
        "split": {"unit": "file", "seed": cfg.split_seed, "test_fraction": cfg.test_fraction,
                  "n_files": len(rows), "n_train": len(train), "n_test": len(test), "per_label": counts},
        "final_loss": {k: {m: h[-1][m] for m in ("align", "mam")} for k, h in histories.items() if h},
        "config": _config_dict(cfg, crop),
    }
    results["aligned_wins"] = sum((t["aligned"]["mean"] > t["baseline"]["mean"]) == t["higher_is_better"]
                                  for t in results["tasks"])
    write_json(out / "results.json", results)
    with atomic_path(out / "features.npz") as tmp, open(tmp, "wb") as f:  # to re-probe without retraining
        np.savez(f, labels=labels, train=train, test=test, **saved)
    plot_results(results, out / "results.png")
    write_text(out / "table.txt", summary_table(results) + "\n")
    return results


class _NoCheckpointTrainer(Trainer):
    """Every result is computed in-process, so the ~80 MB checkpoints a Trainer writes each epoch are skipped."""

    def save(self, path: Path) -> None:
        pass


def train_arm(init, targets: np.ndarray, data: AlignmentData, config: TrainConfig, run_dir: Path,
              run_config: dict, keep_checkpoints: bool = False) -> tuple[AculaModel, list[dict]]:
    """One arm from `init`: the same heads for every arm of a seed (seeded here), then `config.epochs`."""
    seed_everything(config.seed)
    model = AculaModel(copy.deepcopy(init), text_dim=targets.shape[1])
    trainer = (Trainer if keep_checkpoints else _NoCheckpointTrainer)(model, data, config, run_dir, run_config)
    history = trainer.fit(resume=False)
    return model.cpu(), history  # features, probes and zero-shot run on the CPU arrays


def summarise(per_seed: dict[str, list[dict]], tasks=TASKS, **counts) -> list[dict]:
    """Mean ± std over alignment seeds of each seed's mean (over probe seeds or prompt sets);
    `within_seed_std` is the mean spread inside a seed, to tell the two sources of variance apart."""
    out = []
    for name, metric, description in tasks:
        entry = {"name": name, "metric": metric, "higher_is_better": True, "description": description}
        for arm, runs in per_seed.items():
            vals = [r[name]["mean"] for r in runs]
            entry[arm] = {"mean": float(np.mean(vals)), "std": float(np.std(vals)), "per_seed": vals,
                          "within_seed_std": float(np.mean([r[name]["std"] for r in runs]))}
        out.append({**entry, **counts})
    return out


def _view(results: dict) -> dict:
    """Probe and zero-shot rows in the shape `demo.table` / `demo.plot` draw."""
    short = {"normal_vs_abnormal": "normal/abn", "diagnosis_4class": "4-class", "accuracy_4class": "4-class acc"}
    rows = ([{**t, "name": short[t["name"]]} for t in results["tasks"]]
            + [{**t, "name": f"zs {short[t['name']]}"} for t in results["zero_shot"]["tasks"]])
    wins = sum(t["aligned"]["mean"] > t["baseline"]["mean"] for t in rows)
    return {**results, "tasks": rows, "aligned_wins": wins}


def summary_table(results: dict) -> str:
    """`demo.table` (initial / MAM / AcuLa) plus the label-control arm, if it ran."""
    lines = [table(_view(results))]
    if LABEL_CONTROL in results["tasks"][0]:
        cells = [f"{t['name']} {t[LABEL_CONTROL]['mean']:.3f} ± {t[LABEL_CONTROL]['std']:.3f}"
                 for t in results["tasks"]]
        lines.append(f"control, MAM + CKA to one-hot labels (no language model): {'; '.join(cells)}")
    return "\n".join(lines)


def plot_results(results: dict, path: Path) -> None:
    """Bars per task and arm: `demo.plot`'s layout, plus the label-control arm and a file-level title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = _view(results)["tasks"]
    arms = [("initial", "init", "#bbbbbb"), ("baseline", "MAM", "#7a9cc6"), ("aligned", "AcuLa", "#d9822b"),
            (LABEL_CONTROL, "labels", "#8fbc8f")]
    fig, axes = plt.subplots(1, len(rows), figsize=(3.2 * len(rows), 3.2))
    for ax, t in zip(np.atleast_1d(axes), rows):
        shown = [a for a in arms if a[0] in t]
        means = [t[a]["mean"] for a, _, _ in shown]
        ax.bar([n for _, n, _ in shown], means, yerr=[t[a]["std"] for a, _, _ in shown],
               color=[c for _, _, c in shown], capsize=4)
        ax.set_title(f"{t['name']} ({t['metric']})", fontsize=10)
        chance = 0.5 if t["metric"] == "AUROC" else 1 / len(LABELS)
        ax.set_ylim(min(chance, min(means)) - 0.05, 1.0)
        ax.axhline(chance, color="k", lw=0.5, ls=":")
    fig.suptitle(f"{results['encoder']}: {results['split']['n_test']} held-out files, mean ± std over "
                 f"{len(results['seeds'])} alignment seeds ('zs' = zero-shot from prompts)", fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)


def _config_dict(cfg: RealHeartConfig, crop: int | None) -> dict:
    d = asdict(cfg)
    d["train"] = {k: v for k, v in d["train"].items() if k != "extra"}
    d["crop_length"] = crop
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in d.items()}


# ---- command line ------------------------------------------------------------------------------


def register_cli(sub) -> None:
    p = sub.add_parser("real-heart", help="align an encoder on real heart-valve sounds (MR/MS/MVP/N) and probe it",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="folder with labels.csv (path,label) and the audio files")
    p.add_argument("--out", required=True)
    p.add_argument("--encoder", default="yamnet", help="registered encoder (yamnet, opera-gt, ...)")
    p.add_argument("--checkpoint", default=None, help="weights (YAMNet: .tflite/.safetensors); none = random init")
    p.add_argument("--preset", default=None, help="size preset, e.g. tiny")
    p.add_argument("--seeds", default="0,1,2,3,4", help="comma-separated alignment seeds")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--window-seconds", type=float, default=None, help="each clip -> one window this long "
                   "(repeat-padded); default 4 s (4.064 s = 128 frames for log-mel encoders)")
    p.add_argument("--crop-seconds", type=float, default=None, help="alignment crop per clip and step (0 = none)")
    p.add_argument("--freeze-layers", type=int, default=None, help="leading backbone layers frozen in every arm")
    p.add_argument("--teacher", default="minilm", help="minilm, a local folder or a Hugging Face id "
                   "(e.g. google/medgemma-4b-pt on a GPU)")
    p.add_argument("--teacher-layer", type=int, default=-1, help="hidden state to pool (-1 = last)")
    p.add_argument("--probe-lr", type=float, default=RealHeartConfig.probe_lr,
                   help="linear-probe Adam lr (OPERA: 1e-4, which underfits this data)")
    p.add_argument("--probe-epochs", type=int, default=64)
    p.add_argument("--split-seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=RealHeartConfig.threads, help="torch CPU threads")
    p.add_argument("--no-label-control", action="store_true",
                   help="skip the control arm aligned to one-hot labels instead of the reports")
    p.add_argument("--keep-checkpoints", action="store_true")
    p.set_defaults(func=cmd_real_heart)


def config_from_args(args: argparse.Namespace) -> RealHeartConfig:
    d = ENCODER_DEFAULTS.get(args.encoder, ENCODER_DEFAULTS["opera-gt"])
    crop = d["crop_seconds"] if args.crop_seconds is None else (args.crop_seconds or None)
    train = TrainConfig(epochs=args.epochs or d["epochs"], batch_size=args.batch_size, lr=args.lr or d["lr"],
                        warmup_steps=5, weight_decay=0.01)
    return RealHeartConfig(
        data=Path(args.data), out=Path(args.out), encoder=args.encoder, checkpoint=args.checkpoint,
        preset=args.preset, seeds=tuple(int(s) for s in args.seeds.split(",")), split_seed=args.split_seed,
        window_seconds=args.window_seconds or d["window_seconds"], crop_seconds=crop,
        freeze_layers=d["freeze_layers"] if args.freeze_layers is None else args.freeze_layers,
        teacher=args.teacher, teacher_layer=args.teacher_layer, probe_lr=args.probe_lr, probe_epochs=args.probe_epochs,
        threads=args.threads, label_control=not args.no_label_control, keep_checkpoints=args.keep_checkpoints,
        train=train)


def cmd_real_heart(args: argparse.Namespace) -> int:
    results = run(config_from_args(args))
    print(summary_table(results))
    print(f"results: {Path(args.out) / 'results.json'}  figure: {Path(args.out) / 'results.png'}")
    return 0
