"""Subject-disjoint splits. A subject never appears on two sides of a split."""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import GroupShuffleSplit, StratifiedGroupKFold, StratifiedShuffleSplit, ShuffleSplit


def train_val_split(
    n: int, val_fraction: float, seed: int, groups: np.ndarray | None = None, stratify: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, val); grouped by subject when `groups` is given, stratified when possible."""
    idx = np.arange(n)
    if groups is not None:
        if stratify is None:
            return subject_split(groups, val_fraction, seed)
        # small sets: a grouped split can leave one class out of validation; try further seeds
        # deterministically before giving up, since a one-class validation set cannot select a model
        for attempt in range(20):
            tr, va = subject_split(groups, val_fraction, seed + attempt, labels=stratify)
            if len(np.unique(stratify[va])) == len(np.unique(stratify)):
                return tr, va
        raise ValueError(
            f"cannot draw a subject-disjoint validation set holding every class "
            f"({len(np.unique(groups))} subjects, classes {np.unique(stratify).tolist()})"
        )
    if stratify is not None and np.min(np.unique(stratify, return_counts=True)[1]) >= 2:
        sss = StratifiedShuffleSplit(n_splits=1, test_size=val_fraction, random_state=seed)
        return next(sss.split(idx, stratify))
    return next(ShuffleSplit(n_splits=1, test_size=val_fraction, random_state=seed).split(idx))


def subject_split(
    groups: np.ndarray, test_fraction: float, seed: int, labels: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Split recordings so that every subject lies wholly in train or in test.

    With labels, StratifiedGroupKFold keeps class balance roughly equal on both sides; the
    fold nearest `test_fraction` is the test side.
    """
    groups = np.asarray(groups)
    idx = np.arange(len(groups))
    n_groups = len(np.unique(groups))
    if n_groups < 2:
        raise ValueError("a subject-disjoint split needs at least 2 subjects")
    if labels is not None and len(np.unique(labels)) > 1:
        k = max(2, min(n_groups, int(round(1 / test_fraction))))
        sgkf = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
        train, test = next(sgkf.split(idx, np.asarray(labels), groups))
    else:
        gss = GroupShuffleSplit(n_splits=1, test_size=test_fraction, random_state=seed)
        train, test = next(gss.split(idx, groups=groups))
    assert not set(groups[train]) & set(groups[test])
    return np.sort(train), np.sort(test)
