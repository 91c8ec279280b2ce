"""Hugging Face towers (AST, CLAP-audio) on small random configs saved locally: no network."""

from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip("transformers")
from transformers import (  # noqa: E402
    ASTConfig,
    ASTFeatureExtractor,
    ASTModel,
    ClapAudioConfig,
    ClapAudioModelWithProjection,
    ClapConfig,
    ClapFeatureExtractor,
    ClapModel,
    ClapTextConfig,
)

from acula.encoders import create  # noqa: E402
from numerics import Shape, assert_close, encoder_tol, net_shape, reorder_tol, scale_of  # noqa: E402

pytestmark = pytest.mark.numerics

CLAP_AUDIO = dict(
    spec_size=64,
    num_mel_bins=16,
    depths=[1, 1],
    num_attention_heads=[2, 2],
    patch_embeds_hidden_size=16,
    hidden_size=32,
    window_size=4,
    projection_dim=8,
)


def _clap_extractor(**kw):
    return ClapFeatureExtractor(feature_size=16, max_length_s=1, fft_window_size=512, hop_length=480, **kw)


@pytest.fixture(scope="module")
def ast_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("ast")
    torch.manual_seed(0)
    cfg = ASTConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, num_mel_bins=32, max_length=64
    )
    ASTModel(cfg).save_pretrained(d)
    ASTFeatureExtractor(num_mel_bins=32, max_length=64).save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def clap_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("clap")
    torch.manual_seed(0)
    ClapAudioModelWithProjection(ClapAudioConfig(**CLAP_AUDIO)).save_pretrained(d)
    _clap_extractor().save_pretrained(d)
    return d


def _batch_invariant(enc, wave):
    with torch.no_grad():
        batch = enc.forward_feature(wave)
        single = torch.cat([enc.forward_feature(wave[i : i + 1]) for i in range(len(wave))])
    assert_close(batch, single, encoder_tol(enc, batch), "alone vs in a batch")  # fbank front end + the tower
    return batch


def test_ast_shapes_contract_and_batch_invariance(ast_dir):
    enc = create("hf-ast", model=str(ast_dir)).eval()
    assert enc.feature_dim == 32 and enc.contract.sample_rate == 16000 and enc.contract.frontend == "waveform"
    assert enc.contract.window_seconds == pytest.approx(0.64)  # 64 fbank frames: what the tower sees
    wave = torch.randn(3, 12000) * 0.1
    assert enc.features(wave).shape == (3, 64, 32)
    feats = _batch_invariant(enc, wave)
    assert feats.shape == (3, 32) and torch.isfinite(feats).all()
    assert (feats[0] - feats[1]).abs().max() > encoder_tol(enc, feats), "different clips, different features"
    assert enc.forward_feature(torch.randn(1, 500)).shape == (1, 32), "short clips are padded by the extractor"
    with pytest.raises(ValueError, match="expected waveforms"):
        enc.forward_feature(torch.zeros(2, 64, 32))


def test_ast_mam_masks_tiles_and_trains_the_tower(ast_dir):
    enc = create("hf-ast", model=str(ast_dir), mam_mask_ratio=0.5)
    wave = torch.randn(2, 12000) * 0.1
    noise = torch.rand(2, 8)  # 64x32 fbank in 16x16 tiles
    loss, pred, mask = enc.forward_mam(wave, noise=noise)
    assert pred.shape == (2, 8, 256) and mask.shape == (2, 8) and (mask.sum(1) == 4).all()
    assert torch.isfinite(loss)
    # the same masked pass again (train mode, no dropout in this config): the tower, the fbank, the MAM head
    again = enc.forward_mam(wave, noise=noise)[0]
    assert_close(again, loss, reorder_tol(scale_of(loss), net_shape(enc, exclude=()) + Shape(2, 1024)), "MAM loss")
    loss.backward()
    assert enc.model.embeddings.patch_embeddings.projection.weight.grad.abs().sum() > 0
    assert enc.mam_head.proj.weight.grad.abs().sum() > 0
    assert len(enc.ignorable_missing) == len(enc.mam_head.state_dict())


def test_clap_shapes_projection_and_determinism(clap_dir):
    enc = create("hf-clap", model=str(clap_dir)).eval()
    assert enc.feature_dim == 8 and enc.contract.sample_rate == 48000
    long = torch.randn(2, 48000 + 9000) * 0.1  # longer than the 1 s window: cropped, not randomly
    feats = _batch_invariant(enc, long)
    assert feats.shape == (2, 8) and torch.isfinite(feats).all()
    with torch.no_grad():
        assert_close(enc.forward_feature(long), feats, encoder_tol(enc, feats), "again")
        assert_close(enc.forward_feature(long[:, :48000]), feats, encoder_tol(enc, feats), "the first 3 s")
    pooled = create("hf-clap", model=str(clap_dir), use_projection=False).eval()
    assert pooled.feature_dim == 32
    assert pooled.forward_feature(torch.randn(2, 20000)).shape == (2, 32)
    loss, pred, mask = enc.forward_mam(torch.randn(2, 20000) * 0.1)
    assert torch.isfinite(loss) and pred.shape[:2] == mask.shape == (2, (101 // 16) * (16 // 16))


def test_clap_full_checkpoint_and_fusion_model(tmp_path):
    torch.manual_seed(1)
    full = ClapModel(
        ClapConfig(
            text_config=ClapTextConfig(
                vocab_size=99, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32
            ).to_dict(),
            audio_config=ClapAudioConfig(**CLAP_AUDIO).to_dict(),
            projection_dim=8,
        )
    )
    full.save_pretrained(tmp_path / "full")
    _clap_extractor().save_pretrained(tmp_path / "full")
    enc = create("hf-clap", model=str(tmp_path / "full"))
    assert torch.equal(enc.model.audio_projection.linear1.weight, full.audio_projection.linear1.weight)

    fused = dict(CLAP_AUDIO, enable_fusion=True, fusion_type="aff_2d")
    ClapAudioModelWithProjection(ClapAudioConfig(**fused)).save_pretrained(tmp_path / "fused")
    _clap_extractor(truncation="fusion").save_pretrained(tmp_path / "fused")
    enc = create("hf-clap", model=str(tmp_path / "fused")).eval()
    wave = torch.randn(3, 30000) * 0.1
    assert enc.features(wave).shape[1] == 4  # fusion input: four (identical) mel channels
    _batch_invariant(enc, wave)
    assert torch.isfinite(enc.forward_mam(wave)[0])


def test_errors_are_clear(ast_dir, tmp_path):
    with pytest.raises(ValueError, match="needs model="):
        create("hf-ast")
    with pytest.raises(FileNotFoundError, match="model directory not found"):
        create("hf-ast", model=str(tmp_path / "nowhere"))
    with pytest.raises(OSError, match="could not load 'acula-test/no-such-model'.*pass a local path"):
        create("hf-clap", model="acula-test/no-such-model", local_files_only=True)
    with pytest.raises(ValueError, match="expected a CLAP model"):
        create("hf-clap", model=str(ast_dir))
    # a checkpoint that lacks weights must not load as a silently random tower
    from safetensors.torch import load_file, save_file

    broken = tmp_path / "broken"
    ASTModel.from_pretrained(ast_dir).save_pretrained(broken)
    ASTFeatureExtractor.from_pretrained(ast_dir).save_pretrained(broken)
    state = load_file(str(broken / "model.safetensors"))
    state.pop("layernorm.weight")
    save_file(state, str(broken / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(ValueError, match="lacks 1 weights.*layernorm.weight"):
        create("hf-ast", model=str(broken))
