"""The corpora read once, the held-out split, and the prepared folder every arm shares."""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..._io import atomic_path, write_json
from ...data.splits import subject_split
from ...datasets import locate, read_table
from ...evaluate.tasks import get_task
from ...text.cache import embed_texts
from ...text.reports import build_report_table
from ...text.teacher import Teacher

from .config import CorpusSpec, ExperimentConfig
from .training import clip_input, initial_encoder


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
    reports = build_report_table(spec.reports, metadata_paths=[folder], seed=0, profile=cfg.report_profile,
                                 phrasing=cfg.report_phrasing)
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
            "report_profile": cfg.report_profile, "report_phrasing": cfg.report_phrasing,
            "published_reports": {k: Path(v).name for k, v in sorted(cfg.published_reports.items())}}


def prepare(cfg: ExperimentConfig, log) -> Prepared:
    corpora = [load_corpus(s, cfg, log) for s in cfg.corpora]
    base = initial_encoder(cfg)
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


def prompt_embeddings(task: str, teacher, cache_dir: Path) -> list[np.ndarray] | None:
    """Each prompt set of the task (one text per class index) through the teacher."""
    prompts = get_task(task).prompts
    return [embed_texts(teacher, list(s), cache_dir) for s in prompts] if prompts else None
