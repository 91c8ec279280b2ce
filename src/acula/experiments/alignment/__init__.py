"""`acula experiment align`: AcuLa on any set of report-bearing corpora, judged on held-out subjects.

A configuration names corpora, and for each: its dataset reader, its report builder and the bench tasks
scored on it. Nothing below depends on which corpora they are:

1. each corpus is read once (`acula.datasets`); a subject-disjoint part of its subjects (stratified by its
   tasks' labels) is held out: alignment never sees it (asserted) and every probe is tested on it;
2. every recording becomes one fixed window, decoded once; with every report, prompt and label target embedded
   once, this is the prepared folder (`corpus`), from which a run elsewhere trains without data or teacher;
3. from one initialisation (a checkpoint, or a random init pre-trained with MAM on the alignment audio),
   the same steps of: MAM only; MAM + CKA to acula's reports; MAM + CKA to published reports where given
   (acula's elsewhere); MAM + CKA to one-hot task labels (the control: what alignment gains without
   language); for OPERA-GT also the same alignment on masked features (one encoder pass per step) with and
   without a final unmasked epoch. CKA is centred within each corpus, each batch drawn from one corpus;
4. linear probes of every task (train subjects -> held-out subjects), pooled per patient where the task
   pools, and zero-shot from the task's prompts, per alignment seed; paired differences against MAM only.

Modules: `config` (corpora, arms, per-encoder defaults), `corpus` (reading, the split, the prepared folder),
`training` (inputs and one run per arm), `scoring` (probes, zero-shot, diagnostics, comparisons), `report`
(tables, figure), `experiment` (`run`: the whole of it).
"""

from .config import (ARM_NAMES, ARMS, CONFIGS, DEFAULT_ARMS, ENCODER_DEFAULTS, TRAINED, CorpusSpec, ExperimentConfig,
                     Preset, logmel_window, make_config)
from .corpus import (Corpus, Prepared, fingerprint, label_targets, load_corpus, load_prepared, prepare, prepare_only,
                     save_prepared)
from .report import diagnostics_table, plot, table
from .experiment import run
from .scoring import cka, diagnose, evaluate, paired, probe, summarise, teacher_side, zero_shot
from .training import CroppedData, FrozenTrunk, clip_input, encode, freeze, train_arm

__all__ = ["ARMS", "ARM_NAMES", "CONFIGS", "DEFAULT_ARMS", "ENCODER_DEFAULTS", "TRAINED", "Corpus", "CorpusSpec",
           "CroppedData", "ExperimentConfig", "FrozenTrunk", "Prepared", "Preset", "cka", "clip_input",
           "diagnose", "diagnostics_table", "encode", "evaluate", "fingerprint", "freeze", "label_targets",
           "load_corpus", "load_prepared", "logmel_window", "make_config", "paired", "plot", "prepare",
           "prepare_only", "probe", "run", "save_prepared", "summarise", "table", "teacher_side", "train_arm",
           "zero_shot"]
