"""What a downstream task is, what its loader returns, and the small readers the loaders share.

A `Task` is a row of OPERA's task table (docs/protocol.md#tasks) made executable: label map, probe
hyper-parameters, split protocol and a `load(data_root)` that reads the dataset's real download layout
(docs/protocol.md#dataset-layouts); how each encoder hears the task's recordings
(docs/protocol.md#per-task-input-lengths) is encoder knowledge, kept in the encoder registry. A loader returns
`TaskData`: one row per recording with its label and subject, plus either a train/val/test assignment or the
held-out folds of a leave-one-subject-out protocol. Everything that can go wrong with a data root raises
`TaskError` with the path and what was expected, so one bad dataset never stops a benchmark run.
"""

from __future__ import annotations

import csv
import io
import pickle
import re
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable
from xml.etree import ElementTree

import numpy as np
from sklearn.model_selection import train_test_split

from ...audio.spec import InputSpec
from ...data.splits import subject_split, train_val_split
from ...datasets.base import DatasetError, find_audio
from ...encoders.registry import bench_spec

PARTS = ("train", "val", "test")


class TaskError(DatasetError):
    """A task cannot run on this data: the message names the file or split and what was expected."""


def InputPolicy(kind: str, seconds: float, pad: str = "repeat") -> InputSpec:
    """OPERA's words for a task's input as the one `InputSpec`: "windows" is OPERA-GT's path (silence-trimmed
    `seconds`-long windows at 50 % overlap, features averaged), "whole" OPERA-CE/CT's (the whole trimmed
    recording in one pass, padded up to `seconds` by "repeat" or "zero"); docs/protocol.md#input-policies."""
    if kind == "windows":
        return InputSpec("opera", seconds)
    if kind == "whole":
        return InputSpec("whole", seconds, padding=pad, trimming="silence")
    raise ValueError(f"unknown input policy kind {kind!r} (windows | whole)")


@dataclass
class TaskData:
    """Recordings of one task. `split[i]` is train/val/test, or `folds` lists the held-out indices."""

    paths: list[str]
    labels: np.ndarray  # int class indices (classification) or float targets (regression)
    subjects: np.ndarray  # str; a subject never appears on two sides of a split
    split: np.ndarray | None = None
    folds: list[np.ndarray] | None = None
    classes: list[str] | None = None  # class index -> name
    notes: list[str] = field(default_factory=list)
    root: str = ""  # paths are cached relative to this folder
    # A second, pooled score (PhysioNet 2022 scores patients, not recordings): the test recordings of one
    # `pool` id (a patient) are scored together, their probabilities combined by `pool_how` ("max": present if
    # heard anywhere; "mean"), against `pool_labels` (the patient's label, the same on each of its rows).
    pool: np.ndarray | None = None
    pool_labels: np.ndarray | None = None
    pool_how: str = "mean"

    def __len__(self) -> int:
        return len(self.paths)

    def part(self, name: str) -> np.ndarray:
        return np.flatnonzero(self.split == name)

    def subset(self, keep: np.ndarray) -> "TaskData":
        """The rows in `keep` (sorted indices); folds are re-indexed and emptied folds dropped."""
        keep = np.asarray(keep, dtype=int)
        new_index = np.full(len(self), -1)
        new_index[keep] = np.arange(len(keep))
        folds = None
        if self.folds is not None:
            folds = [new_index[f][new_index[f] >= 0] for f in self.folds]
            folds = [f for f in folds if len(f)]
        return replace(self, paths=[self.paths[i] for i in keep], labels=self.labels[keep],
                       subjects=self.subjects[keep], split=None if self.split is None else self.split[keep],
                       folds=folds, notes=list(self.notes), pool=None if self.pool is None else self.pool[keep],
                       pool_labels=None if self.pool_labels is None else self.pool_labels[keep])

    def class_counts(self, idx: np.ndarray) -> str:
        values, counts = np.unique(self.labels[idx], return_counts=True)
        name = (lambda v: self.classes[int(v)]) if self.classes else str
        return ", ".join(f"{name(v)}: {c}" for v, c in zip(values, counts)) or "none"

    def describe(self) -> str:
        if self.split is not None:
            sizes = " / ".join(f"{p} {len(self.part(p))}" for p in PARTS)
            return f"{len(self)} recordings, {len(set(self.subjects))} subjects ({sizes})"
        return f"{len(self)} recordings, {len(set(self.subjects))} subjects, {len(self.folds or [])} held-out folds"

    def validate(self, task_id: str, kind: str) -> None:
        """Refuse data the probe cannot use, saying which split and why."""
        n = len(self.paths)
        if n == 0:
            raise TaskError(f"{task_id}: no usable recordings")
        if len(self.labels) != n or len(self.subjects) != n:
            raise TaskError(f"{task_id}: {n} paths but {len(self.labels)} labels and {len(self.subjects)} subjects")
        if kind == "regression" and not np.isfinite(self.labels.astype(float)).all():
            raise TaskError(f"{task_id}: regression targets contain NaN or Inf")
        if (self.pool is None) != (self.pool_labels is None) or self.pool_how not in ("max", "mean"):
            raise TaskError(f"{task_id}: pooling needs both pool ids and pool labels, combined by max or mean")
        if self.pool is not None:
            per_pool: dict = {}
            for g, y in zip(self.pool.tolist(), self.pool_labels.tolist()):
                if per_pool.setdefault(g, y) != y:
                    raise TaskError(f"{task_id}: pool {g} has two labels ({per_pool[g]} and {y})")
        if self.split is not None:
            bad = sorted(set(self.split.tolist()) - set(PARTS))
            if bad:
                raise TaskError(f"{task_id}: unknown split value(s) {bad}; expected train/val/test")
            for p in PARTS:
                if len(self.part(p)) == 0:
                    raise TaskError(f"{task_id}: the {p} split is empty ({self.describe()})")
            for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
                shared = set(self.subjects[self.part(a)]) & set(self.subjects[self.part(b)])
                if shared:
                    raise TaskError(f"{task_id}: subject(s) {sorted(shared)[:5]} appear in both {a} and {b}")
            if kind == "classification":
                for p in PARTS:
                    if len(np.unique(self.labels[self.part(p)])) < 2:
                        raise TaskError(f"{task_id}: the {p} split has one class only "
                                        f"({self.class_counts(self.part(p))}); AUROC needs at least two")
                unseen = set(self.labels[self.part("test")]) - set(self.labels[self.part("train")])
                if unseen:
                    raise TaskError(f"{task_id}: test class(es) {sorted(unseen)} never appear in train")
        elif self.folds is not None:
            held = np.concatenate(self.folds) if self.folds else np.array([], int)
            if len(self.folds) < 2 or len(held) != len(set(held.tolist())):
                raise TaskError(f"{task_id}: need >= 2 disjoint held-out folds, got {len(self.folds)}")
        else:
            raise TaskError(f"{task_id}: the loader gave neither a split nor folds")


@dataclass(frozen=True)
class Task:
    """One downstream task: protocol constants (docs/protocol.md#probe-protocol) plus the loader of its dataset."""

    id: str
    name: str
    dataset: str
    modality: str
    kind: str  # "classification" (AUROC) | "regression" (MAE)
    target: str  # what is predicted, in words
    protocol: str  # how train/val/test are formed, in words (results.md prints it)
    loader: Callable[[Path], TaskData]
    inputs: str | None = None  # row of the encoders' benchmark input tables (registry.BENCH_INPUTS); None: the id
    label_map: dict[str, int] | None = None  # source value -> class index (documentation and output)
    epochs: int = 64
    batch_size: int = 64
    ckpt_every: int = 1  # OPERA checks validation every n epochs (KAUH 5)
    patience: int | None = None  # early stopping on validation (MMLung 5)
    fold_val_fraction: float = 0.2  # fold protocols: validation carved from each fold's training subjects
    fold_val_seed: int = 42
    # zero-shot: prompt sets, each one text per class index, worded unlike any report (data, not code)
    prompts: tuple[tuple[str, ...], ...] = ()

    @property
    def metric(self) -> str:
        return "MAE" if self.kind == "regression" else "AUROC"

    @property
    def l2(self) -> float:
        return 1e-1 if self.kind == "regression" else 1e-5

    def load(self, data_root: str | Path) -> TaskData:
        data = self.loader(Path(data_root))
        data.validate(self.id, self.kind)
        return data

    def input_policy(self, encoder_name: str) -> InputSpec | None:
        """The encoder's input for this task, as the registry keeps it; None = the encoder's default spec."""
        return bench_spec(encoder_name, self.inputs or self.id)


# --------------------------------------------------------------------------------------------------------
# locating files


def dataset_dir(root: Path, names: tuple[str, ...], what: str, expect: str) -> Path:
    for name in names:
        if (root / name).is_dir():
            return root / name
    raise TaskError(f"{what} not found under {root}: expected {root / names[0]}/{expect}")


def find_file(names: str | tuple[str, ...], *folders: Path, what: str = "") -> Path | None:
    """The first of `names` that exists in any of `folders` (None if none)."""
    names = (names,) if isinstance(names, str) else names
    for folder in folders:
        for name in names:
            if (folder / name).is_file():
                return folder / name
    return None


def require_file(names: str | tuple[str, ...], *folders: Path, what: str) -> Path:
    path = find_file(names, *folders)
    if path is None:
        names = (names,) if isinstance(names, str) else names
        raise TaskError(f"{what}: {names[0]} not found in {', '.join(str(f) for f in folders)}")
    return path


def split_file_folders(root: Path, dataset: Path, eval_name: str) -> tuple[Path, ...]:
    """Where shipped split lists may sit: beside the data, or in OPERA's `feature/<task>_eval/`."""
    return (dataset, dataset / "splits", root / "feature" / eval_name, root.parent / "feature" / eval_name)


# --------------------------------------------------------------------------------------------------------
# readers


def read_csv_rows(path: Path, required: tuple[str, ...] = (), sep: str | None = None) -> list[dict]:
    """Rows as dicts (BOM stripped, ';' or ',' sniffed from the header); missing columns are errors."""
    text = path.read_text(encoding="utf-8-sig", errors="replace")
    header = text.split("\n", 1)[0]
    sep = sep or (";" if header.count(";") > header.count(",") else ",")
    reader = csv.DictReader(io.StringIO(text), delimiter=sep)
    cols = [c.strip() for c in (reader.fieldnames or [])]
    missing = [c for c in required if c not in cols]
    if missing:
        raise TaskError(f"{path}: missing column(s) {', '.join(missing)} (has: {', '.join(cols) or 'none'})")
    rows = []
    for row in reader:
        if None in row:  # DictReader's key for fields beyond the header
            raise TaskError(f"{path}: line {reader.line_num} has more fields than the header ({len(cols)})")
        rows.append({k.strip(): (v or "").strip() for k, v in row.items()})
    return rows


_XLSX_NS = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"


def read_xlsx_rows(path: Path) -> list[dict]:
    """First worksheet of an .xlsx as dicts keyed by the header row (no openpyxl needed).

    Enough for small metadata tables such as OPERA's `All_path.xlsx`: shared and inline strings,
    numbers, empty cells.
    """
    try:
        z = zipfile.ZipFile(path)
    except zipfile.BadZipFile as e:
        raise TaskError(f"{path}: not a readable .xlsx file ({e})") from None
    with z:
        names = z.namelist()
        shared: list[str] = []
        if "xl/sharedStrings.xml" in names:
            root = ElementTree.fromstring(z.read("xl/sharedStrings.xml"))
            shared = ["".join(t.text or "" for t in si.iter(f"{_XLSX_NS}t")) for si in root.findall(f"{_XLSX_NS}si")]
        sheets = sorted(n for n in names if re.fullmatch(r"xl/worksheets/sheet\d+\.xml", n))
        if not sheets:
            raise TaskError(f"{path}: no worksheet inside the .xlsx")
        sheet = ElementTree.fromstring(z.read(sheets[0]))
    grid: list[dict[int, str]] = []
    for row in sheet.iter(f"{_XLSX_NS}row"):
        cells = {}
        for c in row.findall(f"{_XLSX_NS}c"):
            letters = re.match(r"[A-Z]+", c.get("r", "")).group(0)
            col = 0
            for ch in letters:
                col = col * 26 + ord(ch) - 64
            kind, v = c.get("t"), c.find(f"{_XLSX_NS}v")
            if kind == "s" and v is not None:
                cells[col] = shared[int(v.text)]
            elif kind == "inlineStr":
                cells[col] = "".join(t.text or "" for t in c.iter(f"{_XLSX_NS}t"))
            elif v is not None:
                cells[col] = v.text or ""
        grid.append(cells)
    if not grid:
        return []
    header = grid[0]
    return [{header.get(k, f"col{k}"): r.get(k, "") for k in header} for r in grid[1:] if r]


class _NameListUnpickler(pickle.Unpickler):
    """Object-dtype .npy lists (pandas `.values` saved with np.save) unpickle only numpy arrays of builtins."""

    _reconstruct = np.zeros(1).__reduce__()[0]
    _scalar = np.str_("a").__reduce__()[0]
    _ALLOWED = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}

    def find_class(self, module, name):
        if module in ("numpy.core.multiarray", "numpy._core.multiarray"):
            if name == "_reconstruct":
                return self._reconstruct
            if name == "scalar":
                return self._scalar
        if (module, name) in self._ALLOWED:
            return self._ALLOWED[(module, name)]
        raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name} from a split list")


def load_name_list(path: Path) -> list[str]:
    """Strings of a shipped split list (.npy), flattened; object arrays are read without running code."""
    try:
        arr = np.load(path, allow_pickle=False)
    except ValueError:  # object dtype: a pickle stream follows the .npy header
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            fmt = np.lib.format
            (fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0)(f)
            try:
                arr = _NameListUnpickler(f).load()
            except (pickle.UnpicklingError, EOFError, AttributeError) as e:
                raise TaskError(f"{path}: not a list of names ({e})") from None
    except OSError as e:
        raise TaskError(f"{path}: cannot read ({e})") from None

    out: list[str] = []

    def walk(x):
        if isinstance(x, (list, tuple, np.ndarray)):
            for y in x:
                walk(y)
        else:
            out.append(str(x))

    walk(arr.tolist() if isinstance(arr, np.ndarray) else arr)
    return out


# --------------------------------------------------------------------------------------------------------
# building TaskData


def existing(paths: list[Path], notes: list[str], what: str) -> np.ndarray:
    """Indices of the paths that exist, WAV or FLAC under the listed stem (`paths` is updated to the file found);
    a note counts the ones listed but missing."""
    found = [find_audio(p) for p in paths]
    keep = np.array([i for i, p in enumerate(found) if p is not None], dtype=int)
    missing = len(paths) - len(keep)
    for i in keep:
        paths[i] = found[i]
    if missing:
        first = next(p for p, f in zip(paths, found) if f is None)
        notes.append(f"{missing} {what} listed in the metadata are not on disk (e.g. {first}); left out")
    return keep


def make_split(n: int, train: np.ndarray, val: np.ndarray, test: np.ndarray) -> np.ndarray:
    split = np.full(n, "", dtype=object)
    split[np.asarray(train, int)] = "train"
    split[np.asarray(val, int)] = "val"
    split[np.asarray(test, int)] = "test"
    return split.astype(str)


def split_subjects_sklearn(subject_ids: list[str], subject_labels: list, test: float, val: float,
                           seed: int) -> tuple[set, set, set]:
    """OPERA's subject-level recipe: `train_test_split` for test, then again for val, stratified, one seed."""
    rest, te, rest_y, _ = train_test_split(subject_ids, subject_labels, test_size=test, random_state=seed,
                                           stratify=subject_labels)
    tr, va = train_test_split(rest, test_size=val, random_state=seed, stratify=rest_y)
    return set(tr), set(va), set(te)


def carve_val(split: np.ndarray, labels: np.ndarray, subjects: np.ndarray, fraction: float, seed: int,
              stratify: bool) -> np.ndarray:
    """Move `fraction` of the training subjects (stratified when asked) to validation."""
    tr = np.flatnonzero(split == "train")
    _, va = train_val_split(len(tr), fraction, seed, groups=subjects[tr], stratify=labels[tr] if stratify else None)
    out = split.copy()
    out[tr[va]] = "val"
    return out


def subject_wise_split(labels: np.ndarray, subjects: np.ndarray, seed: int, test: float = 0.2,
                       val: float = 0.25, stratify: bool = True) -> np.ndarray:
    """Stratified subject-disjoint 60/20/20 (test first, then `val` of the rest), one fixed seed."""
    n = len(labels)
    rest, te = subject_split(subjects, test, seed, labels=labels if stratify else None)
    split = make_split(n, rest, [], te)
    return carve_val(split, labels, subjects, val, seed, stratify)


def encode_labels(values: list[str], label_map: dict[str, int]) -> np.ndarray:
    return np.array([label_map[v] for v in values], dtype=int)


def class_names(label_map: dict[str, int]) -> list[str]:
    """Class index -> the first source value mapped to it (e.g. {"Healthy": 0, "COPD": 1} -> [Healthy, COPD])."""
    names: dict[int, str] = {}
    for k, v in label_map.items():
        names.setdefault(v, k)
    return [names[i] for i in sorted(names)]
