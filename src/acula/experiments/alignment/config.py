"""Configurations: the corpora of an experiment, its arms, and the per-encoder defaults that fit a CPU."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ...align.trainer import TrainConfig


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
    report_phrasing: str = "varied"  # "fixed": one wording per finding (acula reports build --phrasing)
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
