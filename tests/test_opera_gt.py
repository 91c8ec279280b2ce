"""OPERA-GT re-implementation: key compatibility, golden numbers, presets, input checks."""

from __future__ import annotations

import math
import numpy as np
import pytest
import torch

from acula.encoders import create
from acula.encoders.opera_gt import MaskedAutoencoderViT, sincos_pos_embed
from golden_weights import golden_state_dict, read_tsv
from numerics import U32, assert_close, net_shape, reorder_tol, scale_of

pytestmark = pytest.mark.numerics


def tol(model, *arrays, mam: bool = False) -> float:
    """Two float32 evaluations of `model` (another batch, kernel, CPU or implementation); the MAM pass also
    runs the decoder."""
    return reorder_tol(scale_of(*arrays), net_shape(model, tokens=1025, exclude=("mam_head",) if mam else
                                                    ("mam_head", "decoder")))


@pytest.fixture(scope="module")
def base() -> MaskedAutoencoderViT:
    return create("opera-gt").eval()


@pytest.fixture(scope="module")
def tsv(shared_dir):
    return shared_dir / "reference" / "opera-gt-state-dict.tsv"


@pytest.fixture(scope="module")
def golden(base, tsv, golden_dir, tmp_path_factory) -> MaskedAutoencoderViT:
    """The golden weights, written as an OPERA Lightning checkpoint and loaded through the registry."""
    path = tmp_path_factory.mktemp("golden") / "encoder-operaGT.ckpt"
    torch.save({"state_dict": golden_state_dict(base.state_dict(), tsv), "epoch": 511,
                "pytorch-lightning_version": "2.2.0.post0"}, path)
    return create("opera-gt", checkpoint=str(path)).eval()


def _load(golden_dir, name):
    return torch.from_numpy(np.load(golden_dir / name))


def test_state_dict_matches_published_keys_shapes_and_order(base, tsv):
    ours = [(k, tuple(v.shape)) for k, v in base.state_dict().items()]
    published = [(k, shape) for k, shape, _ in read_tsv(tsv)]
    assert len(ours) == 430
    assert ours == published


def test_parameter_counts(base):
    params = list(base.parameters())
    assert sum(p.numel() for p in params) == 34_814_096
    assert sum(p.numel() for p in params if p.requires_grad) == 34_158_096
    assert not base.pos_embed.requires_grad and not base.decoder_pos_embed.requires_grad
    assert base.feature_dim == 384
    c = base.contract
    assert (c.frontend, c.n_mels, c.min_frames, c.max_frames, c.frames, c.window_policy) == (
        "logmel", 64, 4, 256, 256, "opera")


def test_decoder_buffers_are_not_persistent(base):
    keys = set(base.state_dict())
    assert not any("attn_mask" in k or "relative_coordinates_log" in k for k in keys)
    mask = base.decoder_blocks[1].attn_mask
    assert mask.shape == (16, 16, 16)  # 8x2 windows of 4x4 on the 32x8 map, shift (2, 0)
    # only the two windows of the last row band straddle the roll's wrap-around (rows 28-29 | 30-31)
    masked = (mask == -100).flatten(1).any(1)
    assert masked.tolist() == [False] * 14 + [True, True]
    assert (mask[14] == -100).sum() == 2 * 8 * 8 and set(mask.unique().tolist()) == {0.0, -100.0}
    assert base.decoder_blocks[0].attn_mask is None and base.decoder_blocks[2].attn_mask is None


def test_pos_embed_layout_matches_spec_formula(base):
    """SPEC §2.1: patch (t, f), k = 16t + f -> [sincos_192(k mod 64), sincos_192(t // 4)], row 0 = 0."""
    def sincos(d, p):
        w = 10000.0 ** (-np.arange(d // 2) / (d / 2))
        return np.concatenate([np.sin(p * w), np.cos(p * w)])

    pe = base.pos_embed[0].numpy()
    assert np.all(pe[0] == 0)
    for t, f in [(0, 0), (0, 15), (3, 7), (17, 2), (63, 15)]:
        k = 16 * t + f
        expected = np.concatenate([sincos(192, k % 64), sincos(192, t // 4)])
        # float32 angle pos * 10000^(-i/96), pos <= 63: the exponent's rounding grows ln(10000) = 9.2-fold in
        # the power, then 4 more roundings (division, power, reciprocal, product); sin adds one of its result
        assert_close(pe[1 + k], expected, (63 * (math.log(10000) + 4) + 1) * U32, f"patch ({t}, {f})")
    assert torch.equal(base.decoder_pos_embed, sincos_pos_embed(256, (16, 64)))


@pytest.mark.parametrize("T", [256, 251, 128])
def test_golden_features(golden, golden_dir, T):
    x = _load(golden_dir, f"input_T{T}.npy")
    with torch.no_grad():
        feat = golden.forward_feature(x).numpy()
    ref = np.load(golden_dir / f"opera-gt_feature_T{T}.npy")
    assert feat.shape == ref.shape == (2, 384)
    assert_close(feat, ref, tol(golden, ref), f"T={T} vs OPERA")  # both float32


def test_golden_mam_swin_quirk_decoder(golden, golden_dir):
    x = _load(golden_dir, "input_T256.npy")
    noise = _load(golden_dir, "opera-gt_mam_noise_T256.npy")
    with torch.no_grad():
        loss, pred, mask = golden.forward_mam(x, noise)
    ref = {name: np.load(golden_dir / f"opera-gt_mam_{name}_T256.npy") for name in ("pred", "mask", "loss")}
    assert np.array_equal(mask.numpy().reshape(ref["mask"].shape), ref["mask"])  # sorted from the given noise
    pred_tol = tol(golden, ref["pred"], mam=True)
    assert_close(pred.numpy().reshape(ref["pred"].shape), ref["pred"], pred_tol, "MAM prediction")
    # loss = mean((pred - target)^2): it moves by at most 2 rms(pred - target) x the prediction's tolerance
    assert_close(loss.numpy().reshape(ref["loss"].shape), ref["loss"], 2 * np.sqrt(ref["loss"]) * pred_tol, "MAM loss")
    assert int(mask[0].sum()) == 1024 - int(1024 * 0.3)


def test_quirk_decoder_rejects_lengths_it_cannot_run(base):
    with pytest.raises(ValueError, match=r"multiple of 64.*64, 128, 192, 256.*got 251 frames"):
        base.forward_mam(torch.rand(1, 251, 64))


def test_input_errors_are_clear(base):
    with pytest.raises(ValueError, match=r"\(batch, frames, 64\), got \(2, 128, 32\)"):
        base.forward_feature(torch.rand(2, 128, 32))
    with pytest.raises(ValueError, match="at least 4 frames, got 3"):
        base.forward_feature(torch.rand(2, 3, 64))
    with pytest.raises(ValueError, match="at most 256 frames, got 300"):
        base.forward_feature(torch.rand(1, 300, 64))
    with pytest.raises(ValueError, match=r"noise must have shape \(2, 256\)"):
        base.forward_mam(torch.rand(2, 64, 64), noise=torch.rand(2, 100))


def test_base_batch_invariance_features_and_quirk_decoder(base):
    """A clip's feature and MAM prediction must not depend on its batch neighbours (the decoder's
    raw reshape would mix samples if the token count were not a multiple of 256)."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 64, 64, generator=g)
    noise = torch.rand(2, 256, generator=g)
    with torch.no_grad():
        feats = base.forward_feature(x)
        _, pred, mask = base.forward_mam(x, noise)
        for i in range(2):
            assert_close(base.forward_feature(x[i : i + 1])[0], feats[i], tol(base, feats), "feature")
            _, p1, m1 = base.forward_mam(x[i : i + 1], noise[i : i + 1])
            assert_close(p1[0], pred[i], tol(base, pred, mam=True), "MAM prediction")
            assert torch.equal(m1[0], mask[i])
        # variable length: the first frames of a longer clip are not a batch artefact either
        short = base.forward_feature(x[:, :37])
        assert_close(base.forward_feature(x[1:2, :37])[0], short[1], tol(base, short), "37 frames")


# ----------------------------------------------------------------------------- tiny preset
@pytest.fixture()
def tiny() -> MaskedAutoencoderViT:
    torch.manual_seed(0)
    return create("opera-gt", preset="tiny")


def test_tiny_shapes_backward_and_masked_pass_trains_the_encoder(tiny):
    x = torch.rand(4, 256, 64)
    feat = tiny.forward_feature(x)
    assert feat.shape == (4, tiny.feature_dim) == (4, 128)
    loss, pred, mask = tiny.forward_mam(x)  # no noise: torch.rand on the input's device
    assert pred.shape == (4, 256, 64) and mask.shape == (4, 256)
    assert mask.sum(1).eq(256 - int(256 * 0.3)).all()
    loss.backward()
    grad = tiny.blocks[0].attn.qkv.weight.grad
    assert grad is not None and grad.abs().sum() > 0  # the masked pass reaches the encoder
    assert tiny.pos_embed.grad is None
    c = tiny.contract
    assert (c.min_frames, c.max_frames, c.window_policy) == (8, 256, "acula")


def test_tiny_any_length(tiny):
    tiny.eval()
    with torch.no_grad():
        for T in (8, 100, 256):
            assert tiny.forward_feature(torch.rand(2, T, 64)).shape == (2, 128)
        loss, pred, mask = tiny.forward_mam(torch.rand(2, 100, 64))  # the ViT decoder has no length quirk
    assert pred.shape == (2, 12 * 8, 64) and torch.isfinite(loss)


def test_tiny_batch_invariance(tiny):
    tiny.eval()
    x = torch.rand(5, 256, 64)
    with torch.no_grad():
        feats = tiny.forward_feature(x)
        for i in range(5):
            assert_close(tiny.forward_feature(x[i : i + 1])[0], feats[i], tol(tiny, feats), "alone vs in a batch")


def test_grad_checkpointing_gives_the_same_gradients(tiny):
    x, noise = torch.rand(2, 128, 64), torch.rand(2, 128)
    grads = []
    for flag in (False, True):
        tiny.zero_grad()
        tiny.grad_checkpointing = flag
        loss, _, _ = tiny.forward_mam(x, noise)
        (loss + tiny.forward_feature(x).square().mean()).backward()
        grads.append(tiny.blocks[1].mlp.fc1.weight.grad.clone())
    # recomputed activations: the forward twice, and the backward (about as deep again) once
    assert_close(grads[0], grads[1], 2 * tol(tiny, grads[0], mam=True), "fc1 gradient")


def test_presets_and_overrides():
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        create("opera-gt", preset="huge")
    m = create("opera-gt", preset="tiny", img_size=[128, 64], depth=1)  # JSON-style lists are accepted
    assert m.config == {"name": "opera-gt", "preset": "tiny", "img_size": [128, 64], "depth": 1}
    assert m.pos_embed.shape == (1, 1 + 16 * 8, 128) and m.contract.max_frames == 128
    with pytest.raises(ValueError, match="H\\*W == width"):
        create("opera-gt", decoder_embed_dim=128, decoder_num_heads=8)
