"""Shared fixtures. `../shared` is optional: tests that need it skip with a clear message."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ACULA_SHARED", REPO.parent / "shared"))


def pytest_configure(config):
    config.addinivalue_line("markers", "numerics: float comparisons with tolerances from tests/numerics.py, run under "
                                       "every kernel path by `python tests/numerics.py`")


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"shared reference folder not found at {SHARED} (set ACULA_SHARED)")
    return SHARED


@pytest.fixture(scope="session")
def golden_dir(shared_dir: Path) -> Path:
    d = shared_dir / "reference" / "golden"
    if not d.is_dir():
        pytest.skip(f"golden reference outputs not found at {d}")
    return d
