"""Linear probes on frozen embeddings, following the OPERA protocol (docs/protocol.md#probe-protocol).

Linear (or 1-hidden-layer MLP) head, N(0, 0.01) init, Adam lr 1e-4 decayed x0.97 per epoch,
L2 penalty on head weights *and* biases, gradient clipping at 1.0, best-validation checkpoint,
macro one-vs-rest AUROC. Regression predicts `head(x) * std + mean` with the training targets'
statistics and selects on validation MAE. Small estimator objects in the scikit-learn style.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.metrics import mean_absolute_error, roc_auc_score
from torch import nn

from ..data.splits import train_val_split


def auroc(y: np.ndarray, proba: np.ndarray) -> float:
    """Macro one-vs-rest AUROC on class probabilities (binary AUROC for 2 classes)."""
    y = np.asarray(y)
    if len(np.unique(y)) < 2:
        raise ValueError("AUROC needs both classes in the evaluated set")
    if proba.shape[1] == 2:
        return float(roc_auc_score(y, proba[:, 1]))
    return float(roc_auc_score(y, proba, multi_class="ovr", average="macro", labels=np.arange(proba.shape[1])))


def make_head(d: int, out: int, kind: str) -> nn.Module:
    if kind == "linear":
        head = nn.Sequential(nn.Linear(d, out))
    elif kind == "mlp":
        head = nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Linear(d, out))
    else:
        raise ValueError(f"unknown probe head {kind!r} (linear | mlp)")
    for m in head:
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.01)
            nn.init.zeros_(m.bias)
    return head


@dataclass
class LinearProbe:
    """`fit(X, y, X_val, y_val)` then `score(X, y)`: AUROC (classification) or MAE (regression)."""

    task: str = "classification"  # or "regression"
    head: str = "linear"
    lr: float = 1e-4
    l2: float | None = None  # OPERA: 1e-5 classification, 1e-1 regression
    epochs: int = 64
    batch_size: int = 64
    decay: float = 0.97
    clip: float = 1.0
    seed: int = 0
    ckpt_every: int = 1  # validate every N epochs (OPERA: 5 for KAUH, 3 for SSBPR/MMLung); the last epoch always
    patience: int | None = None  # stop after this many validations without improvement (OPERA MMLung: 5)

    def _check(self, X: np.ndarray, name: str) -> torch.Tensor:
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2 or not np.isfinite(X).all():
            raise ValueError(f"{name}: expected a finite (N, D) embedding matrix, got shape {X.shape}")
        return torch.from_numpy(X)

    def fit(self, X, y, X_val, y_val) -> "LinearProbe":
        reg = self.task == "regression"
        l2 = self.l2 if self.l2 is not None else (1e-1 if reg else 1e-5)
        g = torch.Generator().manual_seed(self.seed)
        torch.manual_seed(self.seed)
        Xt, Xv = self._check(X, "train"), self._check(X_val, "validation")
        if reg:
            yt = torch.as_tensor(np.asarray(y, dtype=np.float32))
            self.mean_, self.std_ = float(yt.mean()), float(yt.std().clamp_min(1e-8))
            n_out = 1
        else:
            self.classes_ = np.unique(np.concatenate([np.asarray(y), np.asarray(y_val)]))
            if len(self.classes_) < 2:
                raise ValueError(f"classification probe needs at least 2 classes, got {self.classes_.tolist()}")
            yt = torch.as_tensor(np.searchsorted(self.classes_, np.asarray(y)))
            n_out = len(self.classes_)
        self.model_ = make_head(Xt.shape[1], n_out, self.head)
        opt = torch.optim.Adam(self.model_.parameters(), lr=self.lr)
        sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=self.decay)
        best, best_state, stale = None, None, 0
        for epoch in range(self.epochs):
            self.model_.train()
            for b in torch.randperm(len(Xt), generator=g).split(self.batch_size):
                out = self._forward(Xt[b])
                loss = (nn.functional.mse_loss(out[:, 0], yt[b]) if reg
                        else nn.functional.cross_entropy(out, yt[b]))
                loss = loss + l2 * sum((p**2).sum() for p in self.model_.parameters())
                opt.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(self.model_.parameters(), self.clip)
                opt.step()
            sched.step()
            if (epoch + 1) % self.ckpt_every and epoch + 1 != self.epochs:
                continue
            metric = self.score(X_val, y_val)
            better = best is None or (metric < best if reg else metric > best)
            if better:
                best, best_state, stale = metric, copy.deepcopy(self.model_.state_dict()), 0
            else:
                stale += 1
                if self.patience is not None and stale >= self.patience:
                    break
        self.model_.load_state_dict(best_state)
        self.best_val_ = best
        return self

    def _forward(self, X: torch.Tensor) -> torch.Tensor:
        out = self.model_(X)
        return out * self.std_ + self.mean_ if self.task == "regression" else out

    @torch.no_grad()
    def predict_proba(self, X) -> np.ndarray:
        self.model_.eval()
        return torch.softmax(self._forward(self._check(X, "input")), dim=1).numpy()

    @torch.no_grad()
    def predict(self, X) -> np.ndarray:
        self.model_.eval()
        out = self._forward(self._check(X, "input"))
        if self.task == "regression":
            return out[:, 0].numpy()
        return self.classes_[out.argmax(1).numpy()]

    def score(self, X, y) -> float:
        if self.task == "regression":
            return float(mean_absolute_error(np.asarray(y, dtype=np.float32), self.predict(X)))
        y_idx = np.searchsorted(self.classes_, np.asarray(y))
        return auroc(y_idx, self.predict_proba(X))


def probe_over_seeds(
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_test: np.ndarray,
    y_test: np.ndarray,
    task: str = "classification",
    groups_train: np.ndarray | None = None,
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4),
    val_fraction: float = 0.2,
    split_seed: int = 1337,
    protocol: str = "opera",
    **probe_options,
) -> dict:
    """OPERA's repeat protocol: one fixed train/val split, 5 head seeds, mean ± std of the test metric.

    `protocol="logistic"` instead fits a standardised L2 logistic / ridge regression whose strength is
    chosen by subject-grouped cross-validation on the training part: deterministic and converged even
    on a few hundred recordings, where OPERA's Adam-1e-4 head barely leaves its random initialisation.
    """
    if protocol == "logistic":
        return _sklearn_probe(X_train, y_train, X_test, y_test, task, groups_train)
    if protocol != "opera":
        raise ValueError(f"unknown probe protocol {protocol!r} (opera | logistic)")
    tr, va = train_val_split(
        len(y_train), val_fraction, seed=split_seed, groups=groups_train,
        stratify=None if task == "regression" else y_train,
    )
    values = []
    for s in seeds:
        p = LinearProbe(task=task, seed=s, **probe_options).fit(X_train[tr], y_train[tr], X_train[va], y_train[va])
        values.append(p.score(X_test, y_test))
    return {
        "metric": "MAE" if task == "regression" else "AUROC",
        "mean": float(np.mean(values)),
        "std": float(np.std(values)),
        "values": [float(v) for v in values],
        "n_train": int(len(tr)),
        "n_val": int(len(va)),
        "n_test": int(len(y_test)),
    }


def _sklearn_probe(X_train, y_train, X_test, y_test, task, groups_train) -> dict:
    import warnings

    with warnings.catch_warnings():  # ill-conditioned folds at the grid's extreme penalties are expected
        warnings.simplefilter("ignore")
        return _sklearn_probe_fit(X_train, y_train, X_test, y_test, task, groups_train)


def _sklearn_probe_fit(X_train, y_train, X_test, y_test, task, groups_train) -> dict:
    from sklearn.linear_model import LogisticRegressionCV, RidgeCV
    from sklearn.model_selection import GroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    groups = np.arange(len(y_train)) if groups_train is None else np.asarray(groups_train)
    cv = list(GroupKFold(n_splits=min(5, len(np.unique(groups)))).split(X_train, y_train, groups))
    if task == "regression":
        model = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-3, 4, 15), cv=cv))
        value = float(mean_absolute_error(y_test, model.fit(X_train, y_train).predict(X_test)))
    else:
        classes = np.unique(y_train)
        model = make_pipeline(StandardScaler(), LogisticRegressionCV(Cs=np.logspace(-4, 2, 13), cv=cv, max_iter=5000,
                                                                     scoring="roc_auc_ovr"))
        proba = model.fit(X_train, y_train).predict_proba(X_test)
        value = auroc(np.searchsorted(classes, y_test), proba)
    return {"metric": "MAE" if task == "regression" else "AUROC", "mean": value, "std": 0.0, "values": [value],
            "n_train": int(len(y_train)), "n_val": 0, "n_test": int(len(y_test))}
