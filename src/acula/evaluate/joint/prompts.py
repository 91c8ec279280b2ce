"""Class prompts for zero-shot classification. The built-in sets are data (`prompts.json`, one entry per
label column, each in the `--prompts FILE` format), so they can be read, copied and edited without code."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

BUILTIN_PROMPTS_FILE = Path(__file__).with_name("prompts.json")
DEFAULT_PROMPTS: dict[str, dict] = json.loads(BUILTIN_PROMPTS_FILE.read_text(encoding="utf-8"))


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
