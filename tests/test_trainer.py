"""Alignment trainer: a tiny end-to-end run, checkpoint round trip and exact resume."""

import csv
import math

import numpy as np
import pytest
import torch

from acula.align.model import AculaModel
from acula.align.trainer import AlignmentData, TrainConfig, Trainer
from numerics import LAMBDA, U32, assert_close, net_shape, reorder_tol, scale_of
from toy_encoder import ToyEncoder


def _data(n=24, seed=0):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 3)).astype(np.float32)
    x = (z @ rng.normal(size=(3, 8)))[:, None, :].repeat(16, 1) + 0.1 * rng.normal(size=(n, 16, 8))
    t = z @ rng.normal(size=(3, 10)) + 0.05 * rng.normal(size=(n, 10))
    return AlignmentData(x.astype(np.float32), t.astype(np.float32))


def _model(seed=0, input_norm=True):
    torch.manual_seed(seed)
    return AculaModel(ToyEncoder(), text_dim=10, hidden_dim=16, proj_dim=8, dropout=0.0, audio_input_norm=input_norm)


def _cfg(**kw):
    base = dict(epochs=3, batch_size=8, lr=1e-2, warmup_steps=2, seed=0)
    base.update(kw)
    return TrainConfig(**base)


def test_alignment_reduces_the_cka_loss(tmp_path):
    data = _data()
    tr = Trainer(_model(), data, _cfg(epochs=20), tmp_path)
    hist = tr.fit()
    first = np.mean([h["align"] for h in hist[:3]])
    last = np.mean([h["align"] for h in hist[-3:]])
    assert last < first - 0.05
    assert (tmp_path / "acula_final.pt").exists()
    with open(tmp_path / "train_log.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == tr.total_steps and {"loss", "align", "mam", "lr"} <= set(rows[0])


@pytest.mark.parametrize("input_norm", [False, True])
def test_checkpoint_has_published_keys_and_loads_weights_only(tmp_path, input_norm):
    tr = Trainer(_model(input_norm=input_norm), _data(), _cfg(epochs=1), tmp_path)
    tr.fit()
    ck = torch.load(tmp_path / "acula_final.pt", map_location="cpu", weights_only=True)
    for k in ("audio_model_state_dict", "audio_projection_mlp_state_dict",
              "language_projection_mlp_state_dict", "optimizer_state_dict", "scheduler_state_dict", "config"):
        assert k in ck
    published = {"layers.0.weight", "layers.0.bias", "layers.3.weight", "layers.3.bias"}
    norm = {"input_norm.running_mean", "input_norm.running_var", "input_norm.num_batches_tracked"}
    assert set(ck["audio_projection_mlp_state_dict"]) == (published | norm if input_norm else published)
    assert set(ck["language_projection_mlp_state_dict"]) == published
    assert ck["config"]["heads"]["audio_input_norm"] is input_norm
    m = _model(seed=5)
    m.encoder.load_state_dict(ck["audio_model_state_dict"], strict=True)
    for k, v in tr.acc.unwrap_model(tr.model).encoder.state_dict().items():
        assert torch.equal(v, m.encoder.state_dict()[k])


def test_interrupted_run_resumes_to_identical_weights(tmp_path):
    full = Trainer(_model(), _data(), _cfg(save_every_steps=1), tmp_path / "full")
    full.fit()
    # interrupt after 5 steps (mid-epoch), then resume in a fresh Trainer with a different init
    part = Trainer(_model(), _data(), _cfg(save_every_steps=1), tmp_path / "part")
    part.fit(max_steps=5)
    assert not (tmp_path / "part" / "acula_final.pt").exists()
    resumed = Trainer(_model(seed=9), _data(), _cfg(save_every_steps=1), tmp_path / "part")
    resumed.fit()
    a = torch.load(tmp_path / "full" / "acula_final.pt", weights_only=True)
    b = torch.load(tmp_path / "part" / "acula_final.pt", weights_only=True)
    for part_name in ("audio_model_state_dict", "audio_projection_mlp_state_dict", "language_projection_mlp_state_dict"):
        for k in a[part_name]:
            assert torch.equal(a[part_name][k], b[part_name][k]), k
    with open(tmp_path / "part" / "train_log.csv") as f:
        steps = [int(r["step"]) for r in csv.DictReader(f)]
    assert steps == list(range(1, full.total_steps + 1))


def test_bad_configs_are_clear(tmp_path):
    with pytest.raises(ValueError, match="fewer than one optimiser step"):
        Trainer(_model(), _data(n=6), _cfg(batch_size=8), tmp_path)
    with pytest.raises(ValueError, match="at least 2"):
        AlignmentData(np.zeros((1, 16, 8), np.float32), np.zeros((1, 10), np.float32))
    with pytest.raises(ValueError, match="NaN"):
        AlignmentData(np.zeros((4, 16, 8), np.float32), np.full((4, 10), np.nan, np.float32))


def test_align_within_column_choice():
    import argparse

    from acula.cli.align import _align_within

    rows = [{"audio_path": "a.wav", "Gen_Report": "x", "dataset": "icbhi"}]
    ask = lambda v: _align_within(argparse.Namespace(align_within=v, manifest="m.csv"), rows)  # noqa: E731
    assert ask(None) == "dataset" and ask("none") == "none" and ask("dataset") == "dataset"
    assert _align_within(argparse.Namespace(align_within=None, manifest="m.csv"), [{"audio_path": "a"}]) == "none"
    with pytest.raises(ValueError, match="m.csv: --align-within site: no such column"):
        ask("site")


def test_alignment_data_groups_reach_the_loss(tmp_path):
    from acula.align.trainer import AlignmentData, Trainer

    base = _data(n=12)
    with pytest.raises(ValueError, match="11 group labels for 12"):
        AlignmentData(base.inputs, base.text_emb, groups=["a"] * 11)
    data = AlignmentData(base.inputs, base.text_emb, groups=["heart", "lung"] * 6)
    assert data.group_names == ["heart", "lung"] and data.groups.tolist() == [0, 1] * 6
    seen = []
    tr = Trainer(_model(), data, _cfg(epochs=1, batch_size=4), tmp_path)
    loss_fn = tr.loss_fn
    tr.loss_fn = lambda a, p, g=None: seen.append(g) or loss_fn(a, p, g)
    tr.fit(resume=False)
    assert len(seen) == 3 and all(g is not None and len(g) == 4 for g in seen)


def test_grouped_data_gives_one_group_per_batch(tmp_path):
    """Within-group CKA compares rows of one group only, so every batch comes from one group and no row is
    left out of an epoch (a group's last partial batch is topped up from that group)."""
    base = _data(n=22)
    groups = np.array(["heart"] * 13 + ["lung"] * 9)
    data = AlignmentData(base.inputs, base.text_emb, groups=groups)
    tr = Trainer(_model(), data, _cfg(epochs=1, batch_size=4), tmp_path)
    for epoch in range(3):
        order = tr._permutation(epoch)
        batches = order.reshape(-1, 4)
        assert all(len(set(data.groups[b])) == 1 for b in batches)
        assert set(order) == set(range(22)) and len(order) == 4 * (4 + 3)
    assert not np.array_equal(tr._permutation(0), tr._permutation(1))
    mixed = Trainer(_model(), data, _cfg(epochs=1, batch_size=4, group_batches=False), tmp_path / "mixed")
    assert sorted(mixed._permutation(0)) == list(range(22))


@pytest.mark.numerics
def test_input_norm_removes_the_shared_offset_and_survives_one_row_batches():
    """Pooled features = a large vector shared by all clips + a small part that differs: the heads see
    only the part that differs, in training (batch statistics) and in eval (running statistics)."""
    torch.manual_seed(0)
    m = AculaModel(ToyEncoder(), text_dim=10, hidden_dim=16, proj_dim=8, dropout=0.2)
    head = m.audio_projection
    x = 100.0 + 0.01 * torch.randn(32, m.encoder.feature_dim)
    head.train()
    torch.manual_seed(1)
    a = head(x)
    torch.manual_seed(1)  # the same dropout mask
    assert torch.isfinite(a).all()
    # x + 5 rounds each value by half a float32 step at 105, a batch mean of 32 such values by LAMBDA sqrt(32) of
    # those (each evaluation); standardising divides by the spread, and the head passes that on with its gain
    spread, z = x.std(0, unbiased=False), (x - x.mean(0)) / x.std(0, unbiased=False)
    d_in = (1 + z.abs().max()) * (1 + 2 * LAMBDA * math.sqrt(32)) * 105 * U32 / spread.min()
    w1, w2 = head.layers[0].weight.detach(), head.layers[3].weight.detach()
    gain = (w2.abs() @ w1.abs()).sum(1).max() / (1 - 0.2)  # Jacobian row sums; dropout scales by 1 / (1 - p)
    tol = float(gain * d_in) + reorder_tol(scale_of(a), net_shape(head))
    assert_close(a, head(x + 5.0), tol, "offset +5")  # another shared offset: the same standardised input
    assert torch.isfinite(head(x[:1])).all()  # one row in training mode: running statistics, no error
    head.eval()
    assert torch.isfinite(head(x[:1])).all()


def test_resuming_with_another_head_is_a_clear_error(tmp_path):
    Trainer(_model(input_norm=False), _data(), _cfg(save_every_steps=1), tmp_path).fit(max_steps=2)
    with pytest.raises(ValueError, match="another model.*--no-resume"):
        Trainer(_model(input_norm=True), _data(), _cfg(save_every_steps=1), tmp_path).fit()
