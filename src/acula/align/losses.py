"""Alignment losses.

`linear_cka` is linear CKA (Kornblith et al. 2019) on sample x sample Gram matrices: it compares
how the batch's audio clips relate to each other with how their paired reports relate, so it
depends on which audio goes with which report and needs no equal widths. `linear_cka_debiased` is
the same quantity from the unbiased HSIC estimator; it is what the `cka` training loss uses, because
the plug-in estimate is near 1 for any two wide, noisy mini-batches (its docstring has the numbers).
`cka_feature` is the published AcuLa formula (feature x feature Grams, docs/protocol.md#alignment-loss), kept only to
reproduce the paper: its two Grams are computed independently, so it is blind to the pairing.

The CKA functions return a similarity in [0, 1]; the training loss is `1 - similarity`. Degenerate batches
(B < 2, constant features) give similarity 0 with finite gradients instead of NaN.

`groups` (one id per row, e.g. the source dataset) centres each group on its own mean before the
Grams are formed: CKA of what is left after the group means are removed. A corpus that mixes heart,
lung and cough datasets has report and audio Grams dominated by which dataset a row comes from, which
any encoder separates already; within-group centring makes the loss about the clinical differences
inside each dataset (measured on the demo corpus: the teacher Gram's CKA with the dataset one-hot is
0.88). Rows alone in their group carry nothing then.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

EPS = 1e-12


def _center(x: torch.Tensor, groups: torch.Tensor | None = None) -> torch.Tensor:
    if groups is None:
        return x - x.mean(dim=0, keepdim=True)
    _, inv, counts = torch.unique(groups, return_inverse=True, return_counts=True)
    sums = torch.zeros(len(counts), x.shape[1], dtype=x.dtype, device=x.device).index_add_(0, inv, x)
    return x - (sums / counts.to(x.dtype)[:, None])[inv]


def _check_groups(x: torch.Tensor, groups: torch.Tensor | None) -> torch.Tensor | None:
    if groups is None:
        return None
    groups = torch.as_tensor(groups, device=x.device)
    if groups.shape != (x.shape[0],):
        raise ValueError(f"groups must hold one id per row: shape {tuple(groups.shape)} for {x.shape[0]} rows")
    return groups


def _unit(x: torch.Tensor) -> torch.Tensor:
    """x / ||x||_F. CKA is scale-invariant, and this keeps the Grams O(1): features of 1e-3 give Gram
    norms near 1e-12, where the EPS guard below would otherwise bias the value (a 2-row batch read 0.74
    instead of 1)."""
    return x / torch.sqrt((x * x).sum().clamp_min(1e-30))


def _cosine_of_grams(k: torch.Tensor, l: torch.Tensor) -> torch.Tensor:
    """<K, L>_F / (||K||_F ||L||_F), safe when either Gram is zero."""
    num = (k * l).sum()
    den = torch.sqrt(((k * k).sum() * (l * l).sum()).clamp_min(EPS))
    return num / den


def linear_cka(x: torch.Tensor, y: torch.Tensor, groups: torch.Tensor | None = None) -> torch.Tensor:
    """Linear CKA between paired rows of x (B, dx) and y (B, dy), computed in float32; with `groups`,
    each group is centred on its own mean (module docstring)."""
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"linear_cka needs paired rows, got {x.shape[0]} and {y.shape[0]}")
    groups = _check_groups(x, groups)
    if x.shape[0] < 2:
        return x.new_zeros((), dtype=torch.float32) + 0.0 * (x.sum() + y.sum()).float()
    x = _unit(_center(x.float(), groups))
    y = _unit(_center(y.float(), groups))
    return _cosine_of_grams(x @ x.T, y @ y.T)


def _u_centre(k: torch.Tensor) -> torch.Tensor:
    """U-centring (Szekely & Rizzo 2014): <U(K), U(L)> / (n (n - 3)) is the unbiased HSIC estimator
    of Song et al. (2012). The diagonal is zeroed, so a sample's similarity to itself counts for nothing."""
    n = k.shape[0]
    k = k - torch.diag_embed(torch.diagonal(k))
    row = k.sum(1, keepdim=True) / (n - 2)
    u = k - row - row.T + k.sum() / ((n - 1) * (n - 2))
    return u - torch.diag_embed(torch.diagonal(u))


def linear_cka_debiased(x: torch.Tensor, y: torch.Tensor, groups: torch.Tensor | None = None) -> torch.Tensor:
    """Linear CKA from the unbiased HSIC estimator (Song et al. 2012; Nguyen, Raghu & Kornblith 2021),
    in [-1, 1], ~0 for unrelated features at any batch size.

    Why it is the training default: the plug-in estimator above counts each sample's similarity to
    itself, so with few samples and wide features both Grams are diagonal-heavy and score near 1
    whatever the pairing. A model can lower 1 - CKA by making its projections noisier (dropout
    does it for free) instead of matching the reports: measured on the demo, a trained model's
    batch CKA was 0.77 for true and for shuffled pairs alike. With `groups`, each group is
    U-centred on its own and only pairs inside a group count; groups of fewer than 4 rows carry
    nothing.
    """
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"linear_cka needs paired rows, got {x.shape[0]} and {y.shape[0]}")
    groups = _check_groups(x, groups)
    # centring changes nothing in exact arithmetic (U-centring removes it) but keeps float32 exact
    # when a large offset dominates the features; then O(1) Grams, as in linear_cka
    x, y = _unit(_center(x.float(), groups)), _unit(_center(y.float(), groups))
    blocks = [torch.arange(len(x), device=x.device)] if groups is None else \
        [torch.nonzero(groups == g).flatten() for g in torch.unique(groups)]
    kl = kk = ll = x.new_zeros(())
    for idx in blocks:
        if len(idx) < 4:
            continue
        k, l = _u_centre(x[idx] @ x[idx].T), _u_centre(y[idx] @ y[idx].T)
        kl, kk, ll = kl + (k * l).sum(), kk + (k * k).sum(), ll + (l * l).sum()
    zero = 0.0 * (x.sum() + y.sum())  # keeps the graph when no group is large enough
    return kl / torch.sqrt((kk * ll).clamp_min(EPS)) + zero


def rbf_cka(x: torch.Tensor, y: torch.Tensor, sigma: float = 1.0,
            groups: torch.Tensor | None = None) -> torch.Tensor:
    """CKA with Gaussian kernels; bandwidth = sigma x median pairwise distance (Kornblith et al.).
    With `groups` the kernels are centred within each group (block-diagonal centring matrix)."""
    groups = _check_groups(x, groups)
    if x.shape[0] < 2:
        return x.new_zeros((), dtype=torch.float32) + 0.0 * (x.sum() + y.sum()).float()
    n = len(x)
    if groups is None:
        h = torch.eye(n, device=x.device) - 1.0 / n
    else:
        same = (groups[:, None] == groups[None, :]).float()
        h = torch.eye(n, device=x.device) - same / same.sum(1, keepdim=True)

    def gram(z: torch.Tensor) -> torch.Tensor:
        d2 = torch.cdist(z.float(), z.float()).pow(2)
        med = d2.detach()[~torch.eye(len(z), dtype=torch.bool, device=z.device)].median().clamp_min(EPS)
        k = torch.exp(-d2 / (2 * sigma**2 * med))
        return h @ k @ h

    return _cosine_of_grams(gram(x), gram(y))


def cka_feature(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The published AcuLa 'CKA': feature Grams, needs equal widths, ignores pairing.

    docs/protocol.md#alignment-loss
    """
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"cka_feature needs equal widths, got {x.shape[1]} and {y.shape[1]}")
    x = _unit(_center(x.float()))
    y = _unit(_center(y.float()))
    return _cosine_of_grams(x.T @ x, y.T @ y)


def info_nce_loss(x: torch.Tensor, y: torch.Tensor, temperature: float = 0.07) -> torch.Tensor:
    """Symmetric InfoNCE (CLIP) over paired projections: an alternative pairing-aware objective."""
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"info_nce needs equal widths, got {x.shape[1]} and {y.shape[1]}")
    logits = F.normalize(x.float(), dim=1) @ F.normalize(y.float(), dim=1).T / temperature
    target = torch.arange(len(x), device=x.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def _feature_loss(x: torch.Tensor, y: torch.Tensor, groups=None) -> torch.Tensor:
    if groups is not None:
        raise ValueError("cka_feature reproduces the published formula, which has no per-group form; "
                         "drop the groups (--align-within none) or use --loss cka")
    return 1.0 - cka_feature(x, y)


LOSSES = {
    "cka": lambda x, y, groups=None: 1.0 - linear_cka_debiased(x, y, groups),
    "cka_biased": lambda x, y, groups=None: 1.0 - linear_cka(x, y, groups),
    "rbf_cka": lambda x, y, groups=None: 1.0 - rbf_cka(x, y, groups=groups),
    "cka_feature": _feature_loss,
    "info_nce": lambda x, y, groups=None: info_nce_loss(x, y),  # every other row is a negative, any group
}


def alignment_loss(name: str):
    """Loss function `(audio_proj, text_proj, groups=None) -> scalar` for a configured name."""
    try:
        return LOSSES[name]
    except KeyError:
        raise ValueError(f"unknown alignment loss {name!r}; choose from {', '.join(LOSSES)}") from None
