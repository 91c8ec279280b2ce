"""Strict checkpoint loader: formats, round trips, refusals and their messages."""

from __future__ import annotations

import argparse
import json

import pytest
import torch

from acula.encoders import create
from acula.encoders.checkpoint import (
    Checkpoint,
    CheckpointError,
    convert,
    load_encoder,
    load_into,
    read_checkpoint,
    save_encoder,
)


class Evil:
    """Unpickling this creates a file: the loader must refuse before that can happen."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture()
def trained():
    """A tiny OPERA-GT with non-default weights, so a load that silently did nothing would show."""
    torch.manual_seed(1)
    m = create("opera-gt", preset="tiny")
    with torch.no_grad():
        for p in m.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.1)
    return m.eval()


def fresh():
    torch.manual_seed(2)
    return create("opera-gt", preset="tiny").eval()


def assert_same_state(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def heads():
    return {"layers.0.weight": torch.randn(16, 128), "layers.0.bias": torch.randn(16),
            "layers.3.weight": torch.randn(8, 16), "layers.3.bias": torch.randn(8)}


# ----------------------------------------------------------------------------- round trips
def test_lightning_ckpt_loads_without_trust(trained, tmp_path):
    path = tmp_path / "encoder-operaGT.ckpt"
    torch.save({"state_dict": trained.state_dict(), "epoch": 3, "global_step": 120,
                "hyper_parameters": {"lr": 1e-4, "name": "mae", "sizes": [1, 2], "pair": (3, 4)}}, path)
    ck = read_checkpoint(path)
    assert ck.format == "lightning" and ck.path == str(path)
    m = create("opera-gt", checkpoint=str(path), preset="tiny")
    assert_same_state(m, trained)


def test_acula_checkpoint_with_optimizer_and_heads(trained, tmp_path):
    opt = torch.optim.AdamW([p for p in trained.parameters() if p.requires_grad], lr=1e-5)
    trained.train()
    trained.forward_mam(torch.rand(2, 64, 64))[0].backward()
    opt.step()
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    audio, language = heads(), heads()
    path = tmp_path / "acula_epoch_10.pt"
    torch.save({"epoch": 10, "audio_model_state_dict": trained.state_dict(),
                "audio_projection_mlp_state_dict": audio, "language_projection_mlp_state_dict": language,
                "optimizer_state_dict": opt.state_dict(), "scheduler_state_dict": sched.state_dict()}, path)
    ck = read_checkpoint(path)
    assert ck.format == "acula"
    assert set(ck.projection_heads) == {"audio", "language"}
    assert torch.equal(ck.projection_heads["audio"]["layers.3.weight"], audio["layers.3.weight"])
    m = fresh()
    report = load_into(m, ck)
    assert len(report.loaded) == len(m.state_dict())
    assert_same_state(m, trained)


def test_raw_state_dict(trained, tmp_path):
    path = tmp_path / "acula_audio_encoder.pt"
    torch.save(trained.state_dict(), path)
    assert read_checkpoint(path).format == "raw"
    m = fresh()
    load_into(m, path)
    assert_same_state(m, trained)


def test_safetensors_round_trip_rebuilds_the_preset(trained, tmp_path):
    path = save_encoder(trained, tmp_path / "enc.safetensors", projection_heads={"audio": heads()})
    sidecar = json.loads((tmp_path / "enc.json").read_text())
    assert sidecar["encoder"] == {"name": "opera-gt", "preset": "tiny"} and sidecar["feature_dim"] == 128
    ck = read_checkpoint(path)
    assert ck.format == "safetensors" and ck.config == sidecar
    assert set(ck.projection_heads) == {"audio"} and not any(k.startswith("projection") for k in ck.encoder_state)
    m = load_encoder(path)
    assert m.config == {"name": "opera-gt", "preset": "tiny"}
    assert_same_state(m, trained)
    x = torch.rand(2, 256, 64)
    with torch.no_grad():
        torch.testing.assert_close(m.forward_feature(x), trained.forward_feature(x), rtol=0, atol=0)
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temporaries


def test_safetensors_config_from_sidecar_only(trained, tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "plain.safetensors"
    save_file({k: v.contiguous() for k, v in trained.state_dict().items()}, str(path))
    assert read_checkpoint(path).config is None
    (tmp_path / "plain.json").write_text(json.dumps({"encoder": {"name": "opera-gt", "preset": "tiny"}}))
    assert_same_state(load_encoder(path), trained)


def test_convert_and_cli(trained, tmp_path, capsys):
    src = tmp_path / "in.ckpt"
    torch.save({"state_dict": trained.state_dict()}, src)
    report = convert(src, tmp_path / "out.safetensors", "opera-gt", preset="tiny")
    assert report.ok and len(report.loaded) == len(trained.state_dict())
    assert_same_state(load_encoder(tmp_path / "out.safetensors"), trained)

    from acula.cli import build_parser

    args = build_parser().parse_args(["convert", str(src), "--encoder", "opera-gt", "--preset", "tiny",
                              "--out", str(tmp_path / "cli.safetensors")])
    assert args.func(args) == 0
    assert "loaded" in capsys.readouterr().out
    assert_same_state(load_encoder(tmp_path / "cli.safetensors"), trained)


# ----------------------------------------------------------------------------- refusals
def test_ct_checkpoint_into_gt_names_the_right_encoder(tmp_path):
    ct = {"encoder.encoder.htsat.patch_embed.proj.weight": torch.zeros(96, 1, 4, 4),
          "encoder.encoder.htsat.layers.0.blocks.0.attn.qkv.weight": torch.zeros(288, 96),
          "g.weight": torch.zeros(512, 768)}
    path = tmp_path / "encoder-operaCT.ckpt"
    torch.save({"state_dict": ct}, path)
    with pytest.raises(CheckpointError, match=r"looks like an opera-ct checkpoint.*--encoder opera-ct") as e:
        create("opera-gt", preset="tiny", checkpoint=str(path))
    assert "missing" in str(e.value) and "unexpected" in str(e.value)


def test_missing_encoder_weight(trained):
    state = trained.state_dict()
    del state["blocks.0.attn.qkv.weight"]
    with pytest.raises(CheckpointError, match=r"missing 1 encoder weights: blocks\.0\.attn\.qkv\.weight"):
        load_into(fresh(), Checkpoint(state))


def test_shape_mismatch_names_expected_and_actual():
    other = create("opera-gt", preset="tiny", embed_dim=96, num_heads=3)
    with pytest.raises(CheckpointError, match=r"blocks\.0\.attn\.qkv\.weight: checkpoint \(288, 96\) vs model \(384, 128\)"):
        load_into(fresh(), Checkpoint(other.state_dict()))


def test_config_mismatch_is_explained(trained, tmp_path):
    path = save_encoder(trained, tmp_path / "tiny.safetensors")
    with pytest.raises(CheckpointError, match=r"saved from encoder \{'name': 'opera-gt', 'preset': 'tiny'\}"):
        create("opera-gt", preset="tiny", depth=2, checkpoint=str(path))


def test_unexpected_keys_strict_and_lenient(trained):
    state = {**trained.state_dict(), "head.weight": torch.zeros(3)}
    with pytest.raises(CheckpointError, match=r"1 unexpected keys: head\.weight"):
        load_into(fresh(), Checkpoint(state))
    m = fresh()
    report = load_into(m, Checkpoint(state), strict=False)
    assert report.ignored_unexpected == ["head.weight"] and "head.weight" in str(report)
    assert_same_state(m, trained)


def test_ignorable_keys_are_reported_not_fatal(trained):
    state = trained.state_dict()
    pos = state.pop("pos_embed")
    state["decoder_blocks.1.attn_mask"] = torch.zeros(16, 16, 16)  # an old export's non-persistent buffer
    m = fresh()
    report = load_into(m, Checkpoint(state))
    assert report.ignored_missing == ["pos_embed"] and report.ignored_unexpected == ["decoder_blocks.1.attn_mask"]
    assert torch.equal(m.pos_embed, pos)  # recomputed, identical
    assert "pos_embed" in str(report) and "attn_mask" in str(report)


def test_missing_decoder_needs_explicit_opt_in(trained, tmp_path):
    state = {k: v for k, v in trained.state_dict().items() if not k.startswith(("decoder_", "mask_token"))}
    with pytest.raises(CheckpointError, match="allow_missing_decoder=True"):
        load_into(fresh(), Checkpoint(state))
    m = fresh()
    report = load_into(m, Checkpoint(state), allow_missing_decoder=True)
    assert "decoder_pred.weight" in report.missing_decoder and "MAM decoder absent" in str(report)
    assert torch.equal(m.blocks[0].attn.qkv.weight, trained.blocks[0].attn.qkv.weight)
    # a partial decoder is never accepted
    partial = {**state, "decoder_norm.weight": trained.decoder_norm.weight.detach()}
    with pytest.raises(CheckpointError, match="part of the decoder"):
        load_into(fresh(), Checkpoint(partial), allow_missing_decoder=True)
    # converted encoder-only files declare themselves so and load without the flag
    src = tmp_path / "enc_only.pt"
    torch.save(state, src)
    report = convert(src, tmp_path / "enc_only.safetensors", "opera-gt", preset="tiny", allow_missing_decoder=True)
    assert report.missing_decoder
    ck = read_checkpoint(tmp_path / "enc_only.safetensors")
    assert ck.config["decoder"] is False and not any(k.startswith("decoder_") for k in ck.encoder_state)
    assert load_encoder(tmp_path / "enc_only.safetensors").feature_dim == 128


def test_prefixed_keys_get_a_hint(trained):
    state = {f"module.{k}": v for k, v in trained.state_dict().items()}
    with pytest.raises(CheckpointError, match="starts with 'module.'"):
        load_into(fresh(), Checkpoint(state))


def test_non_finite_weights_are_refused(trained):
    state = trained.state_dict()
    state["norm.weight"] = torch.full_like(state["norm.weight"], float("nan"))
    with pytest.raises(CheckpointError, match=r"NaN/inf.*norm\.weight"):
        load_into(fresh(), Checkpoint(state))


@pytest.mark.parametrize("suffix", [".ckpt", ".safetensors"])
def test_truncated_file_names_the_file(trained, tmp_path, suffix):
    path = tmp_path / f"model{suffix}"
    if suffix == ".ckpt":
        torch.save({"state_dict": trained.state_dict()}, path)
    else:
        save_encoder(trained, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt") as e:
        read_checkpoint(path)
    assert str(path) in str(e.value)
    path.write_bytes(b"")
    with pytest.raises(CheckpointError, match=str(path)):
        read_checkpoint(path)


def test_missing_file_and_bad_layout(tmp_path):
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        read_checkpoint(tmp_path / "nope.ckpt")
    path = tmp_path / "odd.pt"
    torch.save({"weights": [1, 2, 3]}, path)
    with pytest.raises(CheckpointError, match=r"unrecognised checkpoint layout \(top-level keys: weights\)"):
        read_checkpoint(path)


def test_malicious_pickle_is_refused_without_running(trained, tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": trained.state_dict(), "payload": Evil(str(marker))}, path)
    with pytest.raises(CheckpointError, match="--trust-checkpoint") as e:
        create("opera-gt", preset="tiny", checkpoint=str(path))
    assert "arbitrary code" in str(e.value) and str(path) in str(e.value)
    assert not marker.exists()


def test_trusted_pickle_loads_with_opt_in(trained, tmp_path):
    path = tmp_path / "lightning.ckpt"
    torch.save({"state_dict": trained.state_dict(), "hyper_parameters": argparse.Namespace(lr=1e-4)}, path)
    with pytest.raises(CheckpointError, match="trust_checkpoint=True"):
        read_checkpoint(path)
    m = create("opera-gt", preset="tiny", checkpoint=str(path), trust_checkpoint=True)
    assert_same_state(m, trained)


def test_hf_source_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointError, match=r"acula-test/no-such-repo.*offline mode"):
        read_checkpoint("hf://acula-test/no-such-repo/encoder.ckpt")
    with pytest.raises(CheckpointError, match="expected hf://owner/repo/path"):
        read_checkpoint("hf://only-owner/file.ckpt")


def test_checkpoint_without_batchnorm_counters_loads_and_lists_them(tmp_path):
    """Only BatchNorm's num_batches_tracked missing: loads, the counters listed as recomputable, same outputs."""
    torch.manual_seed(3)
    src = create("opera-ce", preset="tiny")
    with torch.no_grad():
        for name, buf in src.named_buffers():  # running statistics unlike a fresh model's, so a skipped load shows
            if name.endswith(("running_mean", "running_var")):
                buf.copy_(torch.rand_like(buf) + 0.5)
    src.eval()
    state = {k: v for k, v in src.state_dict().items() if not k.endswith("num_batches_tracked")}
    counters = [k for k in src.state_dict() if k.endswith("num_batches_tracked")]
    assert counters and len(state) + len(counters) == len(src.state_dict())
    torch.save(state, tmp_path / "no_counters.pt")

    torch.manual_seed(4)
    dst = create("opera-ce", preset="tiny").eval()
    report = load_into(dst, str(tmp_path / "no_counters.pt"))
    assert report.ok and set(counters) <= set(report.ignored_missing) and len(report.loaded) == len(state)
    assert "recomputable" in str(report) and counters[0] in str(report)
    x = torch.randn(2, 64, 64)
    with torch.no_grad():
        assert torch.equal(dst.forward_feature(x), src.forward_feature(x))  # eval outputs never read the counters

    del state[counters[0].replace("num_batches_tracked", "running_var")]  # a real statistic missing still fails
    torch.save(state, tmp_path / "no_var.pt")
    with pytest.raises(CheckpointError, match="missing 1 encoder weights: .*running_var"):
        load_into(create("opera-ce", preset="tiny"), str(tmp_path / "no_var.pt"))
