"""`--align-features masked`: one OPERA-GT pass per step whose visible tokens feed the alignment (FLIP)."""

import numpy as np
import pytest
import torch

from acula.align.model import AculaModel
from acula.align.trainer import AlignmentData, TrainConfig, Trainer
from acula.encoders import create
from numerics import assert_close, encoder_tol
from toy_encoder import ToyEncoder


def _gt(**kw):
    torch.manual_seed(0)
    return create("opera-gt", preset="tiny", **kw).eval()


def _x(n=4, frames=64, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).random((n, frames, 64), dtype=np.float32))


def test_nothing_masked_pools_like_forward_feature():
    """With no token dropped, the pooled visible tokens are the unmasked features (the encoder blocks are
    permutation-equivariant and positions are added before the shuffle)."""
    enc, x = _gt(mask_ratio=0.0), _x()
    with torch.no_grad():
        _, masked = enc.forward_mam_feature(x, noise=torch.rand(4, enc.num_tokens(64)), decode=False)
        full = enc.forward_feature(x)
    assert_close(masked, full, encoder_tol(enc, full, tokens=enc.num_tokens(64) + 1), "pooled visible tokens")


def test_masked_pass_gives_the_published_mam_loss():
    enc, x = _gt(), _x()
    noise = torch.rand(4, enc.num_tokens(64), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        loss, _ = enc.forward_mam_feature(x, noise=noise)
        want = enc.forward_mam(x, noise=noise)[0]
    assert float(loss) == pytest.approx(float(want), rel=1e-6)


def _pairs(n=16):
    rng = np.random.default_rng(0)
    return AlignmentData(rng.random((n, 64, 64), dtype=np.float32), rng.normal(size=(n, 10)).astype(np.float32))


def _token_counts(model) -> tuple[list, object]:
    """Tokens entering the first block at each encoder pass (CLS included), and the hook to remove."""
    seen = []
    return seen, model.encoder.blocks[0].register_forward_hook(lambda m, a, o: seen.append(a[0].shape[1]))


def _passes(model, x, t, training=True):
    calls = []
    hook = model.encoder.blocks[0].register_forward_hook(lambda *a: calls.append(1))
    model.train(training)
    model(x, t)
    hook.remove()
    return len(calls)


def test_masked_runs_the_encoder_once_per_step_and_full_twice():
    x, t = _x(), torch.randn(4, 10)
    model = AculaModel(_gt(), text_dim=10, hidden_dim=16, proj_dim=8)
    assert _passes(model, x, t) == 2
    model.align_features = "masked"
    assert _passes(model, x, t) == 1
    assert _passes(model, x, t, training=False) == 2  # evaluation never sees a mask


def test_encoders_without_token_masking_refuse_masked():
    model = AculaModel(ToyEncoder(), text_dim=10, hidden_dim=16, proj_dim=8)
    with pytest.raises(ValueError, match="drops no tokens"):
        model.align_features = "masked"
    with pytest.raises(ValueError, match="'full' or 'masked'"):
        AculaModel(_gt(), text_dim=10, align_features="half")


def test_trainer_switches_to_full_for_the_unmasked_epochs(tmp_path):
    data = _pairs()
    model = AculaModel(_gt(), text_dim=10, hidden_dim=16, proj_dim=8)
    seen, hook = _token_counts(model)
    cfg = TrainConfig(epochs=3, batch_size=8, lr=1e-3, align_features="masked", unmasked_epochs=1)
    Trainer(model, data, cfg, tmp_path).fit(resume=False)
    hook.remove()
    tokens = model.encoder.num_tokens(64) + 1
    kept = int(model.encoder.num_tokens(64) * (1 - model.encoder.mask_ratio)) + 1
    # 2 steps per epoch: 2 epochs of one masked pass, then one epoch of a masked and a full pass per step
    assert seen == [kept] * 4 + [kept, tokens] * 2
    with pytest.raises(ValueError, match="unmasked_epochs"):
        Trainer(AculaModel(_gt(), text_dim=10), data, TrainConfig(epochs=2, batch_size=8, unmasked_epochs=1,
                                                                  align_features="full"), tmp_path)


def test_mam_only_training_runs_only_the_masked_pass(tmp_path):
    """With the alignment weighted 0 (the MAM-only arm, MAM pre-training) the unmasked pass would feed nothing."""
    data = _pairs()
    model = AculaModel(_gt(), text_dim=10, hidden_dim=16, proj_dim=8)
    seen, hook = _token_counts(model)
    before = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    history = Trainer(model, data, TrainConfig(epochs=1, batch_size=8, lr=1e-3, lambda_align=0.0),
                      tmp_path).fit(resume=False)
    hook.remove()
    kept = int(model.encoder.num_tokens(64) * (1 - model.encoder.mask_ratio)) + 1
    assert seen == [kept] * 2  # 2 steps, one masked pass each
    assert all(h["align"] == 0.0 and np.isfinite(h["mam"]) for h in history)
    assert any(not torch.equal(v, before[k]) for k, v in model.encoder.state_dict().items())  # MAM did train
    a, p, mam = model.train()(torch.from_numpy(data.inputs[:4]), torch.zeros(4, 10), with_align=False)
    assert a is None and p is None and mam.ndim == 0


def test_auto_is_masked_where_the_encoder_drops_tokens(tmp_path):
    data = _pairs()
    assert TrainConfig().align_features == "auto"
    gt = Trainer(AculaModel(_gt(), text_dim=10), data, TrainConfig(batch_size=8), tmp_path / "gt")
    assert gt.cfg.align_features == "masked" and gt.model.align_features == "masked"
    toy = Trainer(AculaModel(ToyEncoder(), text_dim=10), data, TrainConfig(batch_size=8), tmp_path / "toy")
    assert toy.cfg.align_features == "full"
