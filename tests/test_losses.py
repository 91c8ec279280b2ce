import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from acula.align.losses import (
    alignment_loss,
    cka_feature,
    info_nce_loss,
    linear_cka,
    linear_cka_debiased,
    rbf_cka,
)
from numerics import U32, Shape, assert_close, reorder_tol

pytestmark = pytest.mark.numerics


def cka_tol(b: int, d: int, evaluations: int = 2, depth: int = 6) -> float:
    """A CKA value (|v| <= 1) of b rows of width d in float32, `evaluations` of them (1: against float64):
    centring (b terms), the Grams (d), U-centring / the RBF kernel, the HSIC sums (b^2 terms), the norms."""
    return reorder_tol(1.0, Shape(depth, max(b * b, d)), evaluations)


def feature_tol(b: int, d: int, evaluations: int = 2) -> float:
    """The published feature-Gram CKA: d x d Grams (b terms each), then sums over their d^2 entries."""
    return reorder_tol(1.0, Shape(4, max(b, d * d)), evaluations)


def stored(z: torch.Tensor, signal: torch.Tensor | None = None) -> float:
    """How far CKA can move when z (a signal plus an offset or gain) is rounded to float32: each value by u |z|,
    the signal CKA sees (default: z centred) by u |z| / |signal| relatively; the Grams by 2x, their cosine 2x more."""
    z = z.double()
    signal = z - z.mean(0) if signal is None else signal.double()
    return 4 * U32 * float(z.norm() / signal.norm().clamp_min(1e-300))


def _rot(d, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))[0].float()


def test_cka_identity_rotation_scale():
    x = torch.randn(32, 16)
    assert_close(linear_cka(x, x).item(), 1.0, cka_tol(32, 16))
    z = 3.7 * x @ _rot(16)
    assert_close(linear_cka(x, z).item(), 1.0, cka_tol(32, 16) + stored(z))  # rotation in float32
    # different widths are fine for true CKA
    y = torch.cat([x, torch.zeros(32, 4)], 1) @ _rot(20, 1)
    assert_close(linear_cka(x, y).item(), 1.0, cka_tol(32, 20) + stored(y))


def test_cka_falls_when_pairing_is_shuffled():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(64, 8, generator=g)
    a = z @ torch.randn(8, 32, generator=g) + 0.1 * torch.randn(64, 32, generator=g)
    t = z @ torch.randn(8, 48, generator=g) + 0.1 * torch.randn(64, 48, generator=g)
    paired = linear_cka(a, t).item()
    shuffled = linear_cka(a, t[torch.randperm(64, generator=g)]).item()
    assert paired > 0.8 and shuffled < paired - 0.4


def test_published_feature_cka_is_blind_to_pairing():
    """SPEC §3.3: the published loss is the same for paired and shuffled text rows, and 0 for t = a[perm]."""
    g = torch.Generator().manual_seed(0)
    a, t = torch.randn(24, 512, generator=g), torch.randn(24, 512, generator=g)
    perm = torch.randperm(24, generator=g)
    assert_close(cka_feature(a, t).item(), cka_feature(a, t[perm]).item(), feature_tol(24, 512))
    assert_close(1 - cka_feature(a, a[perm]).item(), 0.0, feature_tol(24, 512))
    assert 1 - linear_cka(a, a[perm]).item() > 0.01  # true CKA notices


def test_reference_value_of_feature_cka():
    """Hand-computed with numpy in float64 from the SPEC formula."""
    rng = np.random.default_rng(3)
    a, t = rng.normal(size=(10, 5)), rng.normal(size=(10, 5))
    A, T = a - a.mean(0), t - t.mean(0)
    Ga, Gt = A.T @ A, T.T @ T
    ref = (Ga * Gt).sum() / (np.linalg.norm(Ga) * np.linalg.norm(Gt))
    got = cka_feature(torch.tensor(a, dtype=torch.float32), torch.tensor(t, dtype=torch.float32)).item()
    assert_close(got, ref, feature_tol(10, 5, evaluations=1) + stored(torch.tensor(a)))  # + the cast


@pytest.mark.parametrize("fn", [linear_cka, linear_cka_debiased, rbf_cka, cka_feature])
def test_degenerate_batches_give_finite_values_and_grads(fn):
    for x in (torch.ones(6, 4, requires_grad=True), torch.randn(1, 4, requires_grad=True)):
        y = torch.randn(x.shape[0], 4)
        v = fn(x, y)
        v.backward()
        assert torch.isfinite(v) and torch.isfinite(x.grad).all()


def test_alignment_loss_names():
    x = torch.randn(8, 4)
    assert_close(alignment_loss("cka")(x, x).item(), 0.0, cka_tol(8, 4))
    assert torch.isfinite(alignment_loss("info_nce")(x, x))
    assert info_nce_loss(x, x) < info_nce_loss(x, x.flip(0))
    with pytest.raises(ValueError, match="unknown alignment loss"):
        alignment_loss("nope")


arrays = st.integers(min_value=2, max_value=24).flatmap(
    lambda b: st.tuples(st.just(b), st.integers(1, 12), st.integers(1, 12), st.integers(0, 2**31 - 1),
                        st.floats(1e-3, 1e3))
)


@settings(max_examples=40, deadline=None)
@given(arrays)
def test_cka_properties(params):
    b, dx, dy, seed, scale = params
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, dx, generator=g) * scale
    y = torch.randn(b, dy, generator=g)
    tol = cka_tol(b, max(dx, dy))
    for fn in (linear_cka, rbf_cka):
        v = fn(x, y).item()
        assert -tol <= v <= 1 + tol
        assert_close(v, fn(y, x).item(), tol)  # symmetric
    # invariant to isotropic scaling and orthogonal transforms, and to translation
    z = 2.5 * x @ _rot(dx, seed % 1000) + 7.0
    assert_close(linear_cka(z, y).item(), linear_cka(x, y).item(), tol + stored(z))
    if dx == dy:
        assert -feature_tol(b, dx) <= cka_feature(x, y).item() <= 1 + feature_tol(b, dx)


def test_cka_does_not_depend_on_the_scale_of_tiny_features():
    """Found by hypothesis: with features of ~1e-3 the Gram norms fell under the NaN guard and CKA read 0.74."""
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(2, 1, generator=g) * 0.0078125, torch.randn(2, 1, generator=g)
    assert_close(float(linear_cka(x, y)), 1.0, cka_tol(2, 1))  # any two distinct points: CKA 1
    x, y = torch.randn(16, 4, generator=g), torch.randn(16, 3, generator=g)
    for s in (1e-6, 1e-3, 1.0, 1e4):  # x * s rounds each value by u
        assert_close(float(linear_cka(x * s, y)), float(linear_cka(x, y)), cka_tol(16, 4) + stored(x))
        assert_close(float(cka_feature(x[:, :3] * s, y)), float(cka_feature(x[:, :3], y)),
                     feature_tol(16, 3) + stored(x))


def _grouped_by_hand(x, y, groups):
    """CKA of the residuals after each group's mean is removed, in float64 numpy."""
    x, y = x.double().numpy(), y.double().numpy()
    for g in np.unique(groups):
        x[groups == g] -= x[groups == g].mean(0)
        y[groups == g] -= y[groups == g].mean(0)
    k, l = x @ x.T, y @ y.T
    return (k * l).sum() / np.sqrt((k * k).sum() * (l * l).sum())


def test_cka_within_groups_ignores_differences_between_groups():
    g = torch.Generator().manual_seed(3)
    x, y = torch.randn(24, 6, generator=g), torch.randn(24, 5, generator=g)
    groups = np.array([0] * 10 + [1] * 8 + [2] * 6)
    got = linear_cka(x, y, torch.from_numpy(groups))
    assert_close(float(got), _grouped_by_hand(x, y, groups), cka_tol(24, 6, evaluations=1))
    # one group is plain CKA
    one_group = torch.zeros(24, dtype=torch.long)
    assert_close(float(linear_cka(x, y, one_group)), float(linear_cka(x, y)), cka_tol(24, 6))
    # a large offset per group (which dataset a row comes from) dominates plain CKA but not the grouped one
    shift_x = torch.from_numpy(np.eye(3)[groups] * 50).float() @ torch.randn(3, 6, generator=g)
    shift_y = torch.from_numpy(np.eye(3)[groups] * 50).float() @ torch.randn(3, 5, generator=g)
    assert float(linear_cka(x + shift_x, y + shift_y)) > 0.9 > float(got) + 0.3
    shifted = float(linear_cka(x + shift_x, y + shift_y, torch.from_numpy(groups)))
    within = stored(x + shift_x, x) + stored(y + shift_y, y)  # the signals rounded next to the group offsets
    assert_close(shifted, float(got), cka_tol(24, 6) + within)
    # identical representations within groups still score 1, and pairing still matters
    z = x @ _rot(6) * 3
    assert_close(float(linear_cka(x, z, torch.from_numpy(groups))), 1.0, cka_tol(24, 6) + stored(z))
    perm = torch.randperm(24, generator=g)
    assert float(linear_cka(x, x[perm], torch.from_numpy(groups))) < 0.6


def test_grouped_losses_degenerate_and_validated():
    x = torch.randn(5, 4, requires_grad=True)
    y = torch.randn(5, 3)
    single = torch.arange(5)  # every row alone in its group: nothing left to compare
    for name in ("cka", "cka_biased", "rbf_cka"):
        loss = alignment_loss(name)(x, y, single)
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(x.grad).all()
        x.grad = None
    with pytest.raises(ValueError, match="one id per row"):
        linear_cka(x, y, torch.arange(4))
    with pytest.raises(ValueError, match="no per-group form"):
        alignment_loss("cka_feature")(x, x, torch.zeros(5))
    assert torch.isfinite(alignment_loss("info_nce")(x, x, torch.zeros(5)))


def test_rbf_cka_within_groups_matches_block_centring():
    g = torch.Generator().manual_seed(4)
    x, y = torch.randn(12, 4, generator=g), torch.randn(12, 3, generator=g)
    groups = torch.tensor([0] * 7 + [1] * 5)
    one_group = torch.zeros(12, dtype=torch.long)
    assert_close(float(rbf_cka(x, y, groups=one_group)), float(rbf_cka(x, y)), cka_tol(12, 4))
    shifted = rbf_cka(x + 100 * groups[:, None].float(), y, groups=groups)  # in range, not equal: a bandwidth
    assert torch.isfinite(shifted) and 0.0 <= float(shifted) <= 1.0


def _hsic_song(k, l):
    """Unbiased HSIC, equation (5) of Song et al. (2012), in float64 numpy."""
    n = len(k)
    k, l = k.copy(), l.copy()
    np.fill_diagonal(k, 0)
    np.fill_diagonal(l, 0)
    one = np.ones(n)
    return (np.trace(k @ l) + (one @ k @ one) * (one @ l @ one) / ((n - 1) * (n - 2))
            - 2 / (n - 2) * one @ k @ l @ one) / (n * (n - 3))


def test_debiased_cka_matches_the_unbiased_hsic_formula():
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(9, 4)), rng.normal(size=(9, 6))
    k, l = x @ x.T, y @ y.T
    ref = _hsic_song(k, l) / np.sqrt(_hsic_song(k, k) * _hsic_song(l, l))
    got = linear_cka_debiased(torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.float32))
    cast = stored(torch.tensor(x)) + stored(torch.tensor(y))  # the float32 inputs
    assert_close(float(got), ref, cka_tol(9, 6, evaluations=1) + cast)


def test_debiased_cka_does_not_reward_unrelated_wide_features():
    """The failure it fixes: plug-in CKA of two unrelated 512-d batches of 64 is ~0.9, so a model can
    lower 1 - CKA by adding per-sample noise (dropout) on both sides, whatever the pairing."""
    g = torch.Generator().manual_seed(0)
    a, t = torch.randn(64, 512, generator=g), torch.randn(64, 512, generator=g)
    assert float(linear_cka(a, t)) > 0.8
    assert abs(float(linear_cka_debiased(a, t))) < 0.1
    z = torch.randn(64, 8, generator=g)  # shared signal under the same noise: found, and pairing-aware
    a_sig = z @ torch.randn(8, 512, generator=g) * 3 + a
    t_sig = z @ torch.randn(8, 512, generator=g) * 3 + t
    paired = float(linear_cka_debiased(a_sig, t_sig))
    shuffled = float(linear_cka_debiased(a_sig, t_sig[torch.randperm(64, generator=g)]))
    assert paired > 0.5 and abs(shuffled) < 0.15


@settings(max_examples=40, deadline=None)
@given(arrays)
def test_debiased_cka_properties(params):
    b, dx, dy, seed, scale = params
    b += 4
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, dx, generator=g) * scale
    y = torch.randn(b, dy, generator=g)
    v = float(linear_cka_debiased(x, y))
    tol = cka_tol(b, max(dx, dy))
    assert -1 - tol <= v <= 1 + tol
    assert_close(v, float(linear_cka_debiased(y, x)), tol)
    assert_close(float(linear_cka_debiased(x, x)), 1.0, tol)
    z = 2.5 * x @ _rot(dx, seed % 1000) + 7.0
    assert_close(float(linear_cka_debiased(z, y)), v, tol + stored(z))


def test_debiased_cka_within_groups():
    g = torch.Generator().manual_seed(6)
    x, y = torch.randn(30, 6, generator=g), torch.randn(30, 5, generator=g)
    groups = torch.tensor([0] * 12 + [1] * 15 + [2] * 3)  # the 3-row group cannot be estimated: ignored
    got = float(linear_cka_debiased(x, y, groups))
    # the pooled estimate of the two usable groups, by hand
    parts = [(x[groups == k].double().numpy(), y[groups == k].double().numpy()) for k in (0, 1)]
    hs = [(_hsic_song(a @ a.T, b @ b.T) * len(a) * (len(a) - 3), _hsic_song(a @ a.T, a @ a.T) * len(a) * (len(a) - 3),
           _hsic_song(b @ b.T, b @ b.T) * len(a) * (len(a) - 3)) for a, b in parts]
    ref = sum(h[0] for h in hs) / np.sqrt(sum(h[1] for h in hs) * sum(h[2] for h in hs))
    assert_close(got, ref, cka_tol(30, 6, evaluations=1))
    shift = torch.from_numpy(np.eye(3)[groups.numpy()] * 50).float()
    xs, ys = x + shift @ torch.randn(3, 6, generator=g), y + shift @ torch.randn(3, 5, generator=g)
    within = stored(xs, x) + stored(ys, y)  # the signals rounded next to the group offsets
    assert_close(float(linear_cka_debiased(xs, ys, groups)), got, cka_tol(30, 6) + within)
    assert_close(alignment_loss("cka")(x, x, groups).item(), 0.0, cka_tol(30, 6))
    assert_close(alignment_loss("cka_biased")(x, y, groups).item(), 1 - float(linear_cka(x, y, groups)), cka_tol(30, 6))
