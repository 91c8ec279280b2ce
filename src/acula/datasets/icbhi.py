"""ICBHI 2017 Respiratory Sound Database (Rocha et al. 2019): the release's headerless tables and annotations.

`ICBHI_final_database/` holds `<pid>_<idx>_<loc>_<mode>_<equipment>.wav` with a `.txt` of breathing cycles
('start end crackles wheezes'); beside it, `ICBHI_Challenge_diagnosis.txt` (pid, diagnosis),
`ICBHI_challenge_train_test.txt` (stem, train/test) and the demographic table. Kaggle copies add a header
line or use commas: both are read. The bench task and the report builder both parse through these.
"""

from __future__ import annotations

import re
from pathlib import Path

from .base import DatasetError

NAME = "icbhi"
STEM = re.compile(r"^(\d+)_([0-9A-Za-z]+)_(Tc|Al|Ar|Pl|Pr|Ll|Lr)_(sc|mc)_(AKGC417L|LittC2SE|Litt3200|Meditron)$")


def table_lines(path: Path, min_fields: int, keep_all: bool = False) -> list[list[str]]:
    """Headerless ICBHI tables: tab separated (Kaggle copies: comma or spaces, sometimes a header line)."""
    out = []
    for i, line in enumerate(Path(path).read_text(encoding="utf-8-sig", errors="replace").splitlines()):
        if not line.strip():
            continue
        sep = "\t" if "\t" in line else ("," if "," in line else None)
        fields = [f.strip() for f in line.split(sep)]
        if len(fields) < min_fields:
            raise DatasetError(f"{path}: line {i + 1} has {len(fields)} fields, expected {min_fields}: {line!r}")
        if i == 0 and not fields[0][:1].isdigit():
            continue  # a header line
        out.append(fields if keep_all else fields[:min_fields])
    return out


def read_diagnosis(path: Path) -> dict[str, str]:
    """Patient id -> diagnosis."""
    return {pid: diag for pid, diag in table_lines(path, 2) if pid.isdigit()}


def read_split(path: Path) -> dict[str, str]:
    """Recording stem -> the official 'train' / 'test'."""
    out = {}
    for stem, split in table_lines(path, 2):
        if not STEM.match(stem):
            raise DatasetError(f"{path}: {stem!r} is not an ICBHI recording name")
        out[stem] = split
    return out


def read_demographics(path: Path) -> dict[str, dict]:
    return {f[0]: {"Age": f[1], "Sex": f[2]} for f in table_lines(path, 3, keep_all=True) if f[0].isdigit()}


def read_cycles(path: Path) -> list[dict]:
    """A recording's `.txt`: one breathing cycle a line, 'start end crackles wheezes'."""
    cycles = []
    for i, line in enumerate(Path(path).read_text(encoding="utf-8", errors="replace").splitlines()):
        f = line.split()
        if not f:
            continue
        if len(f) < 4:
            raise DatasetError(f"{path}: line {i + 1} should be 'start end crackles wheezes', got {line!r}")
        cycles.append({"Cycle_Start": f[0], "Cycle_End": f[1], "Crackles": f[2], "Wheezes": f[3]})
    return cycles
