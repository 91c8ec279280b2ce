"""`acula experiment align`: AcuLa on any set of report-bearing corpora, judged on held-out subjects.

A configuration names corpora, and for each: its dataset reader, its report builder and the bench tasks
scored on it. Nothing below depends on which corpora they are:

1. each corpus is read once (`acula.datasets`); a subject-disjoint part of its subjects (stratified by its
   tasks' labels) is held out: alignment never sees it (asserted) and every probe is tested on it;
2. every recording becomes one fixed window, decoded once;
3. from one initialisation (a checkpoint, or a random init pre-trained with MAM on the alignment audio),
   the same steps of: MAM only; MAM + CKA to acula's reports; MAM + CKA to published reports where given
   (acula's elsewhere); MAM + CKA to one-hot task labels (the control: what alignment gains without
   language). CKA is centred within each corpus, each batch drawn from one corpus;
4. linear probes of every task (train subjects -> held-out subjects), pooled per patient where the task
   pools, and zero-shot from the task's prompts, per alignment seed; paired differences against MAM only.
"""

from __future__ import annotations

import copy
import time
import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .._io import atomic_path, sha256_file, write_json, write_text
from ..align.model import AculaModel
from ..align.trainer import AlignmentData, TrainConfig, Trainer, seed_everything
from ..audio import frontend
from ..datasets.manifest import write_manifest
from ..data.splits import subject_split, train_val_split
from ..datasets import locate, read_table
from ..audio.spec import InputSpec
from ..encoders import create
from ..encoders.checkpoint import save_encoder
from ..evaluate import zeroshot as zs
from ..evaluate.bench import pooled_auroc
from ..evaluate.probe import LinearProbe, auroc
from ..evaluate.tasks import get_task
from ..features import encode_windows, feature_forward, pool_clips, read_inputs
from ..text.cache import embed_texts
from ..text.reports import build_report_table
from ..text.teacher import Teacher


@dataclass(frozen=True)
class CorpusSpec:
    """One corpus of an experiment: where its recordings, reports and tasks come from."""

    dataset: str  # folder name under the data root (the reader's default)
    reports: str  # report builder (acula.text.reports), fed the release folder
    tasks: tuple[str, ...]  # bench tasks scored on this corpus's held-out subjects (their labels stratify the split)
    published: str | None = None  # column of a published report table that names the record's key field
    published_key: str | None = None  # the report row's field that column matches (e.g. 'Patient ID')


@dataclass(frozen=True)
class Preset:
    """A named experiment: its corpora and the window every recording is cut to."""

    corpora: tuple[CorpusSpec, ...]
    window_seconds: float  # each recording -> its first window this long (repeat-padded when shorter)
    about: str


_SPRSOUND = CorpusSpec("sprsound", "sprsound", ("sprsound-adventitious", "sprsound-4class", "sprsound-disease"))
_CIRCOR = CorpusSpec("circor", "circor-location", ("circor-murmur", "circor-outcome"), published="Patient_ID",
                     published_key="Patient ID")
CONFIGS: dict[str, Preset] = {
    "real-data": Preset((_SPRSOUND, _CIRCOR), 8.0, "SPRSound lung sounds + CirCor heart sounds"),
    "sprsound": Preset((_SPRSOUND,), 8.0, "SPRSound lung sounds"),
    "circor": Preset((_CIRCOR,), 8.0, "CirCor heart sounds"),
    "yaseen": Preset((CorpusSpec("yaseen", "yaseen", ("yaseen-abnormal", "yaseen-4class")),), 4.0,
                     "Yaseen heart-valve sounds (1.2-4 s clips; split by file: no patient ids)"),
}
ARMS = ("initial", "baseline", "aligned", "aligned_masked", "aligned_masked_tuned", "published", "label_cka")
ARM_NAMES = {"initial": "initial", "baseline": "MAM only", "aligned": "MAM + CKA (acula reports)",
             "aligned_masked": "MAM + CKA, masked features (one pass)",
             "aligned_masked_tuned": "MAM + CKA, masked + unmasked last epoch",
             "published": "MAM + CKA (published reports)", "label_cka": "MAM + CKA (one-hot labels)"}
# trained arms: (target, aligned?, --align-features); "tuned" runs its last `unmasked_epochs` full
TRAINED = {"baseline": ("reports", False, "full"), "aligned": ("reports", True, "full"),
           "aligned_masked": ("reports", True, "masked"), "aligned_masked_tuned": ("reports", True, "masked"),
           "published": ("published", True, "full"), "label_cka": ("labels", True, "full")}
DEFAULT_ARMS = ("baseline", "aligned", "published", "label_cka")
# Per encoder, what keeps a default run inside its CPU budget (docs/real-data.md says what each costs).
ENCODER_DEFAULTS = {
    # YAMNet: AudioSet weights; its first 8 of 14 layers (75 % of its compute, 6 % of its weights) stay frozen,
    # so their activations are computed once for the features of all arms; each step sees one 0.975-s patch
    # per clip (a step runs the network twice, masked for MAM and whole for CKA: ~1 s for 32 clips here)
    "yamnet": dict(crop_seconds=0.975, freeze_layers=8, epochs=2, lr=1e-4, mam_epochs=0),
    # OPERA-GT: windows of a multiple of 64 log-mel frames (its Swin decoder's unit), 4.064 s = 128 frames;
    # random init + MAM first; at most 2 recordings per subject (an arm is then ~2 min here)
    "opera-gt": dict(crop_seconds=None, freeze_layers=0, epochs=8, lr=5e-4, mam_epochs=8, window_seconds=4.064,
                     max_per_subject=2, arms=DEFAULT_ARMS[:2] + ("aligned_masked", "aligned_masked_tuned")
                     + DEFAULT_ARMS[2:]),
}


def logmel_window(seconds: float, encoder: str) -> float:
    """OPERA-GT's decoder takes multiples of 64 log-mel frames: the nearest such window (at least 64 frames;
    n frames need (n - 1) hops of 512 samples at 16 kHz, so 128 frames = 4.064 s)."""
    if encoder != "opera-gt":
        return seconds
    hop = 512 / 16000
    k = max(1, round((seconds / hop + 1) / 64))
    return round((64 * k - 1) * hop, 6)


def make_config(name: str, data_root: str | Path, out: str | Path, encoder: str = "yamnet", **overrides) -> "ExperimentConfig":
    """The named experiment for `encoder`, with its defaults; any field may be overridden (None = default)."""
    if name not in CONFIGS:
        raise ValueError(f"unknown experiment configuration {name!r}; known: {', '.join(CONFIGS)}")
    preset = CONFIGS[name]
    d = dict(ENCODER_DEFAULTS.get(encoder, ENCODER_DEFAULTS["opera-gt"]))
    train_keys = {"epochs", "lr", "batch_size"}
    given = {k: v for k, v in overrides.items() if v is not None}
    train = TrainConfig(epochs=given.pop("epochs", d.pop("epochs")), lr=given.pop("lr", d.pop("lr")),
                        batch_size=given.pop("batch_size", 32), warmup_steps=5, weight_decay=0.01,
                        mixed_precision=given.pop("mixed_precision", "no"))
    d = {k: v for k, v in d.items() if k not in train_keys}
    window = given.pop("window_seconds", None) or logmel_window(d.pop("window_seconds", preset.window_seconds), encoder)
    d.pop("window_seconds", None)
    return ExperimentConfig(data_root=Path(data_root), out=Path(out), corpora=preset.corpora, encoder=encoder,
                            window_seconds=window, train=train, **{**d, **given})




@dataclass
class ExperimentConfig:
    data_root: Path
    out: Path
    corpora: tuple[CorpusSpec, ...] = CONFIGS["real-data"].corpora
    encoder: str = "yamnet"
    checkpoint: str | None = None  # None: random init, pre-trained with MAM for `mam_epochs` on the alignment audio
    trust_checkpoint: bool = False
    preset: str | None = None
    mam_epochs: int = 0
    published_reports: dict[str, str] = field(default_factory=dict)  # corpus -> CSV with Gen_Report
    seeds: tuple[int, ...] = (0, 1, 2)
    probe_seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    heldout_fraction: float = 0.3
    split_seed: int = 0
    max_per_subject: int | None = None  # recordings kept per subject (CPU budget); None = all
    window_seconds: float = 8.0
    crop_seconds: float | None = None  # alignment sees a random crop this long per clip and step
    freeze_layers: int = 0
    teacher: str = "minilm"
    report_profile: str = "clinical"
    probe_lr: float = 1e-2
    probe_epochs: int = 64
    threads: int = 2
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=4, batch_size=32, lr=1e-4,
                                                                   warmup_steps=5, weight_decay=0.01))
    cache_dir: Path | None = None
    arms: tuple[str, ...] = DEFAULT_ARMS  # trained arms, in the order each seed runs them (TRAINED)
    unmasked_epochs: int = 1  # the final full-feature phase of aligned_masked_tuned
    device: str = "auto"  # training and features; probes always run on the CPU
    probe_workers: int = 0  # > 1: probes run in that many processes, beside the training
    prepared: Path | None = None  # the inputs, labels and teacher embeddings (default OUT/prepared)

    def __post_init__(self):
        unknown = [a for a in self.arms if a not in TRAINED]
        if unknown:
            raise ValueError(f"unknown arm(s) {', '.join(unknown)}; known: {', '.join(TRAINED)}")



# ---- inputs and arms -------------------------------------------------------------------------------------


def clip_input(path: str, encoder, seconds: float) -> np.ndarray:
    """One fixed window per clip: its first `seconds`, repeat-padded when shorter (OPERA's padding,
    so no window is part silence and clip length does not leak into the features), through the
    encoder's front end."""
    return read_inputs(path, encoder.contract, InputSpec("acula", seconds, padding="repeat"), encoder.name)[0].numpy()


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
        # a clip's patches are its windows: the one pooling loop averages them, `batch` clips per pass
        return pool_clips(lambda h: top(h).mean(dim=(2, 3)), self.acts, batch * self.acts.shape[1]).numpy()


class CroppedData(AlignmentData):
    """A random `length`-long crop (axis 1) of each clip every time it is drawn: cheaper steps, more views."""

    def __init__(self, inputs: np.ndarray, text_emb: np.ndarray, length: int | None, seed: int,
                 groups: np.ndarray | None = None):
        super().__init__(inputs, text_emb, groups)
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


@torch.inference_mode()
def heads(model: AculaModel, x: np.ndarray, project) -> np.ndarray:
    model.eval()
    return project(torch.from_numpy(np.asarray(x, dtype=np.float32))).numpy()


class _NoCheckpointTrainer(Trainer):
    """Every result is computed in-process, so the ~80 MB checkpoints a Trainer writes each epoch are skipped."""

    def save(self, path: Path) -> None:
        pass


def train_arm(init, targets: np.ndarray, data: AlignmentData, config: TrainConfig, run_dir: Path,
              run_config: dict, keep_checkpoints: bool = False,
              device: torch.device | None = None) -> tuple[AculaModel, list[dict]]:
    """One arm from `init`: the same heads for every arm of a seed (seeded here), then `config.epochs`."""
    from accelerate import Accelerator

    seed_everything(config.seed)
    model = AculaModel(copy.deepcopy(init), text_dim=targets.shape[1])
    acc = Accelerator(cpu=device is not None and device.type == "cpu", mixed_precision=config.mixed_precision)
    trainer = (Trainer if keep_checkpoints else _NoCheckpointTrainer)(model, data, config, run_dir, run_config,
                                                                      accelerator=acc)
    history = trainer.fit(resume=False)
    return model.cpu(), history  # features, probes and zero-shot run on the CPU arrays



# ---- data ---------------------------------------------------------------------------------------------------


@dataclass
class Corpus:
    """The recordings of one corpus that a report or a task uses, with their labels and held-out flag."""

    spec: CorpusSpec
    paths: list[str]
    subjects: np.ndarray
    report_rows: dict[str, dict]  # path -> report row (acula's builder), for the non-held-out part only
    labels: dict[str, np.ndarray]  # task -> label per recording (-1: not in the task)
    pool: dict[str, tuple[np.ndarray, np.ndarray, str]]  # task -> (pool ids, pool labels, how)
    heldout: np.ndarray  # bool per recording
    classes: dict[str, list[str]]
    notes: list[str]
    heldout_reports: dict[str, dict] = field(default_factory=dict)  # never trained on: diagnostics only


def load_corpus(spec: CorpusSpec, cfg: ExperimentConfig, log) -> Corpus:
    root = Path(cfg.data_root)
    folder = locate(spec.dataset, root)
    reports = build_report_table(spec.reports, metadata_paths=[folder], seed=0, profile=cfg.report_profile)
    by_path = {r["audio_path"]: r for r in reports.rows if r.get("audio_path")}
    notes = [f"{spec.dataset}: {reports.summary()}"]
    tasks = {t: get_task(t).load(root) for t in spec.tasks}
    paths = sorted(set(by_path) | {p for d in tasks.values() for p in d.paths})
    index = {p: i for i, p in enumerate(paths)}
    subjects = np.array([""] * len(paths), dtype=object)
    for r in reports.rows:
        subjects[index[r["audio_path"]]] = r["subject_id"]
    labels, pool, classes = {}, {}, {}
    for t, d in tasks.items():
        y = np.full(len(paths), -1)
        rows = np.array([index[p] for p in d.paths])
        y[rows] = d.labels
        for i, s in zip(rows, d.subjects):
            if subjects[i] and subjects[i] != s:
                raise ValueError(f"{paths[i]}: subject {s} in task {t} but {subjects[i]} in the reports")
            subjects[i] = s
        labels[t], classes[t] = y, list(d.classes or [])
        if d.pool is not None:
            ids = np.full(len(paths), "", dtype=object)
            plab = np.full(len(paths), -1)
            ids[rows], plab[rows] = d.pool, d.pool_labels
            pool[t] = (ids.astype(str), plab, d.pool_how)
    subjects = subjects.astype(str)
    keep = np.arange(len(paths))
    if cfg.max_per_subject:  # the first n recordings of each subject, in path order: a fixed, label-blind cut
        seen: dict[str, int] = {}
        keep = np.array([i for i, s in enumerate(subjects) if seen.setdefault(s, 0) < cfg.max_per_subject
                         and not seen.__setitem__(s, seen[s] + 1)])
        notes.append(f"{spec.dataset}: at most {cfg.max_per_subject} recordings per subject: {len(keep)} of "
                     f"{len(paths)} kept")
    paths = [paths[i] for i in keep]
    subjects = subjects[keep]
    labels = {t: y[keep] for t, y in labels.items()}
    pool = {t: (a[keep], b[keep], how) for t, (a, b, how) in pool.items()}
    # stratified by every task's label at once, so each task finds each of its classes on both sides
    joint = np.unique(np.stack([labels[t] for t in spec.tasks], axis=1), axis=0, return_inverse=True)[1].ravel()
    with warnings.catch_warnings():  # rare label combinations: stratification is best-effort, which is fine
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        _, test = subject_split(subjects, cfg.heldout_fraction, cfg.split_seed, labels=joint)
    heldout = np.zeros(len(paths), bool)
    heldout[test] = True
    report_rows = {p: by_path[p] for p, h in zip(paths, heldout) if p in by_path and not h}
    heldout_reports = {p: by_path[p] for p, h in zip(paths, heldout) if p in by_path and h}  # diagnostics only
    held_subjects = set(subjects[heldout])
    assert not {r["subject_id"] for r in report_rows.values()} & held_subjects, "a held-out subject would be aligned"
    log(f"{spec.dataset}: {len(paths)} recordings of {len(set(subjects))} subjects; held out "
        f"{heldout.sum()} recordings of {len(held_subjects)} subjects; alignment corpus {len(report_rows)}")
    return Corpus(spec, paths, subjects, report_rows, labels, pool, heldout, classes, notes + list(
        n for d in tasks.values() for n in d.notes), heldout_reports)


def published_reports(spec: CorpusSpec, table: str, rows: list[dict]) -> list[str]:
    """The published report of each alignment row, joined on the spec's key; a row without one is an error."""
    reports = {r[spec.published]: r["Gen_Report"] for r in read_table(Path(table),
                                                                      required=(spec.published, "Gen_Report"))}
    missing = [r[spec.published_key] for r in rows if r[spec.published_key] not in reports]
    if missing:
        raise ValueError(f"{table}: no published report for {len(missing)} alignment record(s), e.g. "
                         f"{spec.published} {missing[0]}")
    return [reports[r[spec.published_key]] for r in rows]


# ---- evaluation ---------------------------------------------------------------------------------------------


def probe(X: np.ndarray, c: Corpus, task: str, cfg: ExperimentConfig) -> dict:
    """OPERA's probe (one subject-grouped train/val split, a head per probe seed) on train subjects, tested on
    the held-out ones; plus the pooled per-patient score where the task has one."""
    y = c.labels[task]
    tr = np.flatnonzero((y >= 0) & ~c.heldout)
    te = np.flatnonzero((y >= 0) & c.heldout)
    missing = set(y[tr].tolist()) - set(y[te].tolist())
    if missing:
        raise ValueError(f"{task}: the held-out subjects have no recording of class(es) "
                         f"{sorted(c.classes[task][i] for i in missing)}; hold out more (--heldout-fraction) or "
                         "keep more recordings per subject")
    a, b = train_val_split(len(tr), 0.2, 1337, groups=c.subjects[tr], stratify=y[tr])
    values, pooled = [], []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a linear head on 1024-d features: a second thread only adds overhead
    try:
        for s in cfg.probe_seeds:
            p = LinearProbe(task="classification", seed=s, lr=cfg.probe_lr, epochs=cfg.probe_epochs)
            p.fit(X[tr[a]], y[tr[a]], X[tr[b]], y[tr[b]])
            proba = p.predict_proba(X[te])
            values.append(auroc(np.searchsorted(p.classes_, y[te]), proba))
            if task in c.pool:
                ids, plab, how = c.pool[task]
                pooled.append(pooled_auroc(proba, ids[te], plab[te], how))
    finally:
        torch.set_num_threads(threads)
    out = {"mean": float(np.mean(values)), "std": float(np.std(values)), "values": values,
           "n_train": int(len(tr)), "n_test": int(len(te)), "n_test_subjects": int(len(set(c.subjects[te])))}
    if pooled:
        out["pooled"] = {"mean": float(np.mean(pooled)), "std": float(np.std(pooled)), "values": pooled}
    return out


def prompt_embeddings(task: str, teacher, cache_dir: Path) -> list[np.ndarray] | None:
    """Each prompt set of the task (one text per class index) through the teacher."""
    prompts = get_task(task).prompts
    return [embed_texts(teacher, list(s), cache_dir) for s in prompts] if prompts else None


def zero_shot(audio: np.ndarray, text_train: np.ndarray, train_rows: np.ndarray, c: Corpus, task: str,
              prompts: list[np.ndarray], mode: str = "calibrated") -> float:
    """Mean AUROC over prompt sets on the held-out recordings; the calibration is fitted on this corpus's
    alignment pairs only (train subjects and their reports, never a prompt or a held-out clip)."""
    cal = zs.Calibration.fit(audio[train_rows], text_train) if mode == "calibrated" else None
    y = c.labels[task]
    te = np.flatnonzero((y >= 0) & c.heldout)
    return float(np.mean([zs.classify(zs.similarity(audio[te], p, mode, cal), y[te])["auroc"] for p in prompts]))


def cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA, unbiased HSIC estimator (the training loss's), of two paired matrices."""
    from ..align.losses import linear_cka_debiased

    return float(linear_cka_debiased(torch.from_numpy(np.asarray(x, np.float32)),
                                     torch.from_numpy(np.asarray(y, np.float32))))


def diagnose(f: np.ndarray, corpora: list[Corpus], offset: np.ndarray, report_emb: dict) -> dict:
    """Why alignment helps or not, per corpus: how much the encoder's features share the reports' geometry
    (CKA with the teacher's report embeddings) on the alignment subjects and on the held-out ones, and how
    much they share each task's label geometry on the held-out subjects. Held-out reports are embedded for
    this measurement only; no model ever trains on them."""
    out = {}
    for k, c in enumerate(corpora):
        X = f[offset[k]:offset[k + 1]]
        where = {p: i for i, p in enumerate(c.paths)}
        d = {}
        for part, rows in (("train", c.report_rows), ("heldout", c.heldout_reports)):
            idx = np.array([where[p] for p in rows], dtype=int)
            if len(idx) >= 4:
                d[f"features_vs_reports_{part}"] = cka(X[idx], report_emb[c.spec.dataset][part])
        for t, y in c.labels.items():
            te = np.flatnonzero((y >= 0) & c.heldout)
            d[f"features_vs_{t}_heldout"] = cka(X[te], np.eye(int(y.max()) + 1, dtype=np.float32)[y[te]])
        out[c.spec.dataset] = d
    return out


def teacher_side(corpora: list[Corpus], report_emb: dict) -> dict:
    """CKA of the report embeddings with each task's one-hot labels, on the alignment subjects: what the
    reports can teach about each task at best (1 = the reports' geometry is the labels')."""
    out = {}
    for c in corpora:
        where = {p: i for i, p in enumerate(c.paths)}
        idx = np.array([where[p] for p in c.report_rows], dtype=int)
        out[c.spec.dataset] = {t: cka(report_emb[c.spec.dataset]["train"], np.eye(int(y.max()) + 1, dtype=np.float32)
                                      [np.maximum(y[idx], 0)] * (y[idx] >= 0)[:, None])
                               for t, y in c.labels.items()}
    return out


def paired(a: list[float], b: list[float]) -> dict:
    """a - b per alignment seed, with a paired t-test (few seeds: read the per-seed values too)."""
    from scipy import stats

    d = np.asarray(a) - np.asarray(b)
    p = float(stats.ttest_rel(a, b).pvalue) if len(d) > 1 and np.std(d) > 0 else float("nan")
    return {"mean_diff": float(d.mean()), "per_seed": d.tolist(), "wins": int((d > 0).sum()), "p_paired_t": p}


# ---- the experiment -----------------------------------------------------------------------------------------


def run(cfg: ExperimentConfig, log=print) -> dict:
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    try:
        return _run(cfg, log)
    finally:
        torch.set_num_threads(threads)


# ---- the prepared inputs ------------------------------------------------------------------------------------


@dataclass
class Prepared:
    """What every arm shares, computed once from the corpora and the teacher. Saved, it lets a rerun skip the
    decoding and the teacher, and lets the arms train where neither the recordings nor the teacher are."""

    corpora: list[Corpus]
    x: np.ndarray  # one window per recording, corpus by corpus
    align_idx: np.ndarray  # rows of x in the alignment corpus (train subjects with a report)
    groups: np.ndarray  # the corpus of each alignment row
    targets: dict[str, np.ndarray]  # per alignment row: "reports", "published" (where given), "labels"
    prompts: dict[str, list[np.ndarray] | None]  # task -> prompt sets through the teacher
    report_emb: dict[str, dict[str, np.ndarray | None]]  # corpus -> train / held-out report embeddings
    teacher_key: str
    fingerprint: dict

    @property
    def offset(self) -> np.ndarray:
        return np.cumsum([0] + [len(c.paths) for c in self.corpora])

    @property
    def align_rows(self) -> list[dict]:
        return [c.report_rows[p] for c in self.corpora for p in c.paths if p in c.report_rows]


def fingerprint(cfg: ExperimentConfig, encoder) -> dict:
    """The settings the prepared inputs depend on: the encoder's front end, not the encoder (OPERA-GT's presets
    share one), nor where the data root is (a copy elsewhere is the same)."""
    c = encoder.contract
    return {"corpora": [asdict(c) for c in cfg.corpora],
            "front_end": {"frontend": c.frontend, "sample_rate": c.sample_rate, "n_mels": c.n_mels},
            "window_seconds": cfg.window_seconds, "max_per_subject": cfg.max_per_subject,
            "heldout_fraction": cfg.heldout_fraction, "split_seed": cfg.split_seed, "teacher": cfg.teacher,
            "report_profile": cfg.report_profile,
            "published_reports": {k: Path(v).name for k, v in sorted(cfg.published_reports.items())}}


def prepare(cfg: ExperimentConfig, log) -> Prepared:
    corpora = [load_corpus(s, cfg, log) for s in cfg.corpora]
    seed_everything(cfg.split_seed)
    base = create(cfg.encoder, checkpoint=cfg.checkpoint, trust_checkpoint=cfg.trust_checkpoint,
                  **({"preset": cfg.preset} if cfg.preset else {}))
    all_paths = [p for c in corpora for p in c.paths]
    x = np.stack([clip_input(p, base, cfg.window_seconds) for p in tqdm(all_paths, desc="inputs", unit="clip")])
    offset = np.cumsum([0] + [len(c.paths) for c in corpora])
    align_idx = np.array([offset[k] + i for k, c in enumerate(corpora) for i, p in enumerate(c.paths)
                          if p in c.report_rows], dtype=np.int64)
    groups = np.array([c.spec.dataset for c in corpora for p in c.paths if p in c.report_rows])
    rows = [c.report_rows[p] for c in corpora for p in c.paths if p in c.report_rows]
    teacher = Teacher(cfg.teacher)
    cache_dir = Path(cfg.cache_dir or Path(cfg.out) / "text_cache")
    text = embed_texts(teacher, [r["Gen_Report"] for r in rows], cache_dir)
    targets = {"reports": text}
    given = {c.spec.dataset: cfg.published_reports.get(c.spec.dataset) for c in corpora}
    if any(given.values()):
        pub = [r["Gen_Report"] for r in rows]
        for c in corpora:
            if given[c.spec.dataset] and c.spec.published:
                idx = [i for i, g in enumerate(groups) if g == c.spec.dataset]
                for i, rep in zip(idx, published_reports(c.spec, given[c.spec.dataset], [rows[i] for i in idx])):
                    pub[i] = rep
        targets["published"] = embed_texts(teacher, pub, cache_dir)
    targets["labels"] = label_targets(corpora, offset, align_idx)
    prompts = {t: prompt_embeddings(t, teacher, cache_dir) for c in corpora for t in c.spec.tasks}
    report_emb = {}
    for c in corpora:
        held = [r["Gen_Report"] for r in c.heldout_reports.values()]
        report_emb[c.spec.dataset] = {"train": text[groups == c.spec.dataset],
                                      "heldout": embed_texts(teacher, held, cache_dir) if held else None}
    return Prepared(corpora, x, align_idx, groups, targets, prompts, report_emb, teacher.key, fingerprint(cfg, base))


def _corpus_json(c: Corpus) -> dict:
    return {"spec": asdict(c.spec), "paths": c.paths, "subjects": c.subjects.tolist(), "report_rows": c.report_rows,
            "labels": {t: y.tolist() for t, y in c.labels.items()},
            "pool": {t: [a.tolist(), b.tolist(), how] for t, (a, b, how) in c.pool.items()},
            "heldout": c.heldout.tolist(), "classes": c.classes, "notes": c.notes,
            "heldout_reports": c.heldout_reports}


def _corpus_from_json(d: dict) -> Corpus:
    spec = CorpusSpec(**{**d["spec"], "tasks": tuple(d["spec"]["tasks"])})
    return Corpus(spec, d["paths"], np.array(d["subjects"], dtype=str), d["report_rows"],
                  {t: np.array(y, dtype=np.int64) for t, y in d["labels"].items()},
                  {t: (np.array(a, dtype=str), np.array(b, dtype=np.int64), how) for t, (a, b, how) in d["pool"].items()},
                  np.array(d["heldout"], dtype=bool), d["classes"], d["notes"], d["heldout_reports"])


def save_prepared(p: Prepared, folder: Path, dtype=np.float32) -> None:
    """`prepared.json` is written last: a folder holding it is complete. float16 halves the inputs for transport
    (log-mel in [0, 1]: error below 2.5e-4)."""
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {"x": p.x.astype(dtype), "align_idx": p.align_idx, "groups": p.groups.astype(str)}
    arrays.update({f"target/{k}": v for k, v in p.targets.items()})
    for t, sets in p.prompts.items():
        arrays.update({f"prompt/{t}/{j}": e for j, e in enumerate(sets or [])})
    for d, parts in p.report_emb.items():
        arrays.update({f"report/{d}/{part}": e for part, e in parts.items() if e is not None})
    with atomic_path(folder / "arrays.npz") as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, **arrays)
    write_json(folder / "prepared.json", {"version": 1, "fingerprint": p.fingerprint, "teacher": p.teacher_key,
                                          "prompt_sets": {t: len(v or []) for t, v in p.prompts.items()},
                                          "corpora": [_corpus_json(c) for c in p.corpora]})


def load_prepared(folder: Path, expect: dict | None = None) -> Prepared:
    import json

    meta = json.loads((folder / "prepared.json").read_text())
    expect = None if expect is None else json.loads(json.dumps(expect))  # tuples read back as lists
    if expect is not None and meta["fingerprint"] != expect:
        diff = sorted(k for k in expect if meta["fingerprint"].get(k) != expect[k])
        raise ValueError(f"{folder}: prepared for other settings ({', '.join(diff)} differ); point --prepared "
                         "elsewhere or delete it")
    with np.load(folder / "arrays.npz") as z:
        a = {k: z[k] for k in z.files}
    corpora = [_corpus_from_json(c) for c in meta["corpora"]]
    prompts = {t: [a[f"prompt/{t}/{j}"] for j in range(n)] or None for t, n in meta["prompt_sets"].items()}
    report_emb = {c.spec.dataset: {part: a.get(f"report/{c.spec.dataset}/{part}") for part in ("train", "heldout")}
                  for c in corpora}
    targets = {k.removeprefix("target/"): v for k, v in a.items() if k.startswith("target/")}
    return Prepared(corpora, a["x"].astype(np.float32), a["align_idx"], a["groups"], targets, prompts, report_emb,
                    meta["teacher"], meta["fingerprint"])


def prepare_only(cfg: ExperimentConfig, dtype: str = "float32") -> Path:
    folder = Path(cfg.prepared or Path(cfg.out) / "prepared")
    save_prepared(prepare(cfg, print), folder, np.dtype(dtype))
    return folder


# ---- the experiment -----------------------------------------------------------------------------------------


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


@torch.inference_mode()
def encode(encoder, x: np.ndarray, device: torch.device, batch: int = 64) -> np.ndarray:
    """Features of each one-window clip on `device` (the encoder goes back to the CPU after)."""
    encoder.to(device).eval()
    f = encode_windows(feature_forward(encoder, device), x, batch).numpy()
    encoder.cpu()
    return f


def _run(cfg: ExperimentConfig, log) -> dict:
    t0 = time.time()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    folder = Path(cfg.prepared or out / "prepared")
    seed_everything(cfg.split_seed)
    base = create(cfg.encoder, checkpoint=cfg.checkpoint, trust_checkpoint=cfg.trust_checkpoint,
                  **({"preset": cfg.preset} if cfg.preset else {}))
    if (folder / "prepared.json").is_file():
        prep = load_prepared(folder, fingerprint(cfg, base))
        log(f"inputs, labels and teacher embeddings from {folder}")
    else:
        prep = prepare(cfg, log)
        save_prepared(prep, folder)
    corpora, offset, align_idx, groups = prep.corpora, prep.offset, prep.align_idx, prep.groups
    for c in corpora:
        write_manifest(out / f"split-{c.spec.dataset}.csv",
                       [{"audio_path": p, "subject_id": s, "part": "heldout" if h else "train"}
                        for p, s, h in zip(c.paths, c.subjects, c.heldout)])
    heldout_all = np.concatenate([c.heldout for c in corpora])
    assert not heldout_all[align_idx].any(), "a held-out recording is in the alignment corpus"
    write_manifest(out / "alignment.csv", [{"audio_path": r["audio_path"], "subject_id": r["subject_id"],
                                            "dataset": g, "Gen_Report": r["Gen_Report"]}
                                           for r, g in zip(prep.align_rows, groups)])
    device = resolve_device(cfg.device)
    crop = None if cfg.crop_seconds is None else int(round(cfg.crop_seconds * base.contract.sample_rate))
    if crop is not None and base.contract.frontend == "logmel":
        crop = frontend.frames_for(crop)
    x_all, text = prep.x, prep.targets["reports"]
    diagnostics = {"reports_vs_labels": teacher_side(corpora, prep.report_emb), "arms": {}}

    # the initialisation: a checkpoint, or MAM pre-training on the alignment audio from a seeded random init
    init = base
    if cfg.checkpoint is None and cfg.mam_epochs:
        log(f"MAM pre-training {cfg.encoder} for {cfg.mam_epochs} epochs on {len(align_idx)} recordings")
        model, _ = train_arm(base, text, CroppedData(x_all[align_idx], text, crop, cfg.split_seed, groups),
                             replace(cfg.train, epochs=cfg.mam_epochs, lambda_align=0.0, seed=cfg.split_seed),
                             out / "runs" / "mam-pretrain", {"arm": "mam-pretrain"}, device=device)
        init = model.encoder
    freeze(init, cfg.freeze_layers)
    trunk = FrozenTrunk(init, x_all, cfg.freeze_layers) if cfg.freeze_layers else None
    feats_of = (lambda enc: trunk.features(enc)) if trunk else (lambda enc: encode(enc, x_all, device))
    (out / "encoders").mkdir(exist_ok=True)
    save_encoder(init, out / "encoders" / "initial.safetensors")

    pool = None
    if cfg.probe_workers > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        pool = ProcessPoolExecutor(cfg.probe_workers, mp_context=multiprocessing.get_context("spawn"))
    results: dict[str, dict] = {}
    zero: dict[str, dict] = {}
    saved: dict[str, np.ndarray] = {}
    seconds: dict[str, dict] = {}
    f0 = saved["initial"] = feats_of(init)
    evaluate(results, zero, "initial", -1, None, f0, text, prep, cfg, pool, log)
    diagnostics["arms"]["initial"] = [diagnose(f0, corpora, offset, prep.report_emb)]
    lam = cfg.train.lambda_align or 1.0
    arms = [a for a in cfg.arms if TRAINED[a][0] in prep.targets]
    for a in sorted(set(cfg.arms) - set(arms)):
        log(f"arm {a} skipped: no {TRAINED[a][0]} targets (--published-reports)")

    def finish(wait: bool) -> dict:
        summary = summarise(_resolved(results, wait), zero, corpora)
        summary.update({
            "complete": wait, "wall_seconds": time.time() - t0, "seeds": list(cfg.seeds),
            "probe_seeds": list(cfg.probe_seeds), "encoder": f"{cfg.encoder}:{cfg.preset or 'default'}",
            "initial": (f"checkpoint {Path(cfg.checkpoint).name} (sha256 {sha256_file(cfg.checkpoint)[:16]})"
                        if cfg.checkpoint else f"random init + {cfg.mam_epochs} MAM epochs on the alignment audio"),
            "teacher": cfg.teacher, "n_alignment": int(len(align_idx)), "device": str(device),
            "train_seconds": seconds,
            "corpora": {c.spec.dataset: {"recordings": len(c.paths), "subjects": len(set(c.subjects)),
                                         "heldout_recordings": int(c.heldout.sum()),
                                         "heldout_subjects": len(set(c.subjects[c.heldout])),
                                         "notes": c.notes} for c in corpora},
            "config": _config_dict(cfg, crop), "diagnostics": diagnostics})
        write_json(out / "results.json", summary)
        return summary

    try:
        for seed in cfg.seeds:
            for arm in arms:
                target, aligned, mode = TRAINED[arm]
                tgt = prep.targets[target]
                log(f"seed {seed}: {ARM_NAMES[arm]}")
                tc = replace(cfg.train, lambda_align=lam if aligned else 0.0, seed=seed, align_features=mode,
                             unmasked_epochs=cfg.unmasked_epochs if arm == "aligned_masked_tuned" else 0)
                t1 = time.time()
                model, _ = train_arm(init, tgt, CroppedData(x_all[align_idx], tgt, crop, seed, groups), tc,
                                     out / "runs" / f"{arm}-seed{seed}",
                                     {"teacher": prep.teacher_key, "arm": arm, "experiment": "align"}, device=device)
                seconds.setdefault(arm, {})[seed] = time.time() - t1
                heads_state = {"audio": model.audio_projection.state_dict(),
                               "language": model.language_projection.state_dict()}
                save_encoder(model.encoder, out / "encoders" / f"{arm}-seed{seed}.safetensors",
                             projection_heads=heads_state)
                f = saved[f"{arm}_seed{seed}"] = feats_of(model.encoder)
                evaluate(results, zero, arm, seed, model if target != "labels" and aligned else None, f, tgt,
                         prep, cfg, pool, log)
                diagnostics["arms"].setdefault(arm, []).append(diagnose(f, corpora, offset, prep.report_emb))
                finish(wait=False)  # what is done so far: a killed run keeps it
        summary = finish(wait=True)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    with atomic_path(out / "features.npz") as tmp, open(tmp, "wb") as fh:  # to re-probe without retraining
        np.savez(fh, paths=np.array([p for c in corpora for p in c.paths]), heldout=heldout_all, **saved)
    plot(summary, out / "results.png")
    write_text(out / "table.md", table(summary) + "\n\n" + diagnostics_table(summary) + "\n")
    return summary


def label_targets(corpora: list[Corpus], offset: np.ndarray, align_idx: np.ndarray) -> np.ndarray:
    """One-hot of every task's label (zeros where a recording is not in the task): the control target."""
    blocks = []
    for k, c in enumerate(corpora):
        for t, y in c.labels.items():
            n = len(c.classes[t]) or int(y.max()) + 1
            col = np.zeros((int(offset[-1]), n), np.float32)
            rows = np.flatnonzero(y >= 0)
            col[offset[k] + rows, y[rows]] = 1.0
            blocks.append(col)
    return np.concatenate(blocks, axis=1)[align_idx]


def evaluate(results, zero, arm, seed, model, f, text, prep: Prepared, cfg, pool=None, log=print) -> None:
    """Probe every task on this arm's features (in `pool` when given: results then hold futures); zero-shot
    through the heads of a report-aligned arm (raw features to raw teacher embeddings for the initial encoder)."""
    t0 = time.time()
    offset, align_idx = prep.offset, prep.align_idx
    for k, c in enumerate(prep.corpora):
        X = f[offset[k]:offset[k + 1]]
        in_corpus = (align_idx >= offset[k]) & (align_idx < offset[k + 1])
        rows = align_idx[in_corpus] - offset[k]
        for t in c.spec.tasks:
            job = pool.submit(probe, X, c, t, cfg) if pool is not None else probe(X, c, t, cfg)
            results.setdefault(arm, {}).setdefault(t, {})[seed] = job
            if prep.prompts.get(t) is None or (model is None and arm != "initial"):
                continue
            if model is None:
                a, tt, p = X, text[in_corpus], prep.prompts[t]
            else:
                a = heads(model, X, model.audio_projection)
                tt = heads(model, text[in_corpus], model.language_projection)
                p = [heads(model, q, model.language_projection) for q in prep.prompts[t]]
            zero.setdefault(arm, {}).setdefault(t, {})[seed] = zero_shot(a, tt, rows, c, t, p)
    if pool is None:
        log(f"  {ARM_NAMES[arm]}: " + ", ".join(f"{t} {results[arm][t][seed]['mean']:.3f}" for c in prep.corpora
                                                for t in c.spec.tasks) + f" ({time.time() - t0:.0f} s)")


def _resolved(results: dict, wait: bool) -> dict:
    """arm -> task -> {seed: probe result}: futures resolved (waited for with `wait`, else only the done ones)."""
    out: dict = {}
    for arm, per_task in results.items():
        for t, by_seed in per_task.items():
            for seed, r in by_seed.items():
                if hasattr(r, "result"):
                    if not (wait or r.done()):
                        continue
                    r = r.result()
                out.setdefault(arm, {}).setdefault(t, {})[seed] = r
    return out


# paired comparisons reported per task: (arm, against)
COMPARE = (("aligned", "baseline"), ("aligned_masked", "baseline"), ("aligned_masked_tuned", "baseline"),
           ("published", "baseline"), ("label_cka", "baseline"), ("aligned_masked", "aligned"),
           ("aligned_masked_tuned", "aligned"))


def summarise(results: dict, zero: dict, corpora: list[Corpus]) -> dict:
    tasks = []
    for c in corpora:
        for t in c.spec.tasks:
            for level in ("recording", "patient"):
                entry = {"task": t if level == "recording" else f"{t}@patient", "dataset": c.spec.dataset,
                         "metric": "AUROC"}
                for arm in ARMS:
                    runs = results.get(arm, {}).get(t, {})
                    seeds = sorted(runs)
                    vals = [runs[s]["mean"] if level == "recording" else runs[s].get("pooled", {}).get("mean")
                            for s in seeds]
                    if not vals or vals[0] is None:
                        continue
                    entry[arm] = {"mean": float(np.mean(vals)), "std": float(np.std(vals)), "per_seed": vals,
                                  "seeds": seeds, "probe_seed_std": float(np.mean([runs[s]["std"] for s in seeds]))}
                    r0 = runs[seeds[0]]
                    entry["n_test"], entry["n_test_subjects"] = r0["n_test"], r0["n_test_subjects"]
                if "baseline" not in entry:
                    continue
                for arm, other in COMPARE:
                    if arm in entry and other in entry:
                        common = sorted(set(entry[arm]["seeds"]) & set(entry[other]["seeds"]))
                        if common:
                            va = [entry[arm]["per_seed"][entry[arm]["seeds"].index(s)] for s in common]
                            vb = [entry[other]["per_seed"][entry[other]["seeds"].index(s)] for s in common]
                            entry[f"{arm}_vs_{other}"] = paired(va, vb)
                tasks.append(entry)
    zs_rows = []
    for arm, per_task in zero.items():
        for t, by_seed in per_task.items():
            vals = [by_seed[s] for s in sorted(by_seed)]
            zs_rows.append({"task": t, "arm": arm, "mean": float(np.mean(vals)), "std": float(np.std(vals)),
                            "per_seed": vals})
    wins = sum(1 for e in tasks if e.get("aligned_vs_baseline", {}).get("mean_diff", 0) > 0)
    return {"tasks": tasks, "zero_shot": zs_rows, "aligned_wins": wins, "n_tasks": len(tasks)}


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


def _config_dict(cfg: ExperimentConfig, crop: int | None) -> dict:
    d = asdict(cfg)
    d["train"] = {k: v for k, v in d["train"].items() if k != "extra"}
    d["crop_length"] = crop
    d["corpora"] = [asdict(c) for c in cfg.corpora]
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in d.items()}
