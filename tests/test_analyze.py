"""`acula analyze cka`: per-layer features, the CKA matrix and the before/after heatmaps."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from torch import nn

from acula.cli import build_parser
from acula.encoders.base import AudioEncoder, InputContract
from acula.evaluate.analyze import cka_matrix, find_layer_stack, layer_features, read_matrix_csv
from numerics import U64, Shape, assert_close, reorder_tol, scale_of


class ConvNet(AudioEncoder):
    """Folds (B, P) patches into the batch like YAMNet, with its stack in a Sequential `backbone`."""

    def __init__(self):
        super().__init__()
        self.contract = InputContract(frontend="logmel", n_mels=8, max_frames=None, min_frames=1)
        self.backbone = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.Conv2d(4, 6, 3, padding=1))
        self.mam_head = nn.Sequential(nn.Linear(6, 2), nn.Linear(2, 2))  # must never be taken for the stack
        self.feature_dim = 6

    def forward_feature(self, x):
        b, t, f = x.shape
        patches = x.reshape(b * 2, 1, t // 2, f)
        return self.backbone(patches).mean(dim=(2, 3)).view(b, 2, -1).mean(1)


@pytest.mark.numerics
def test_hooks_pool_conv_maps_and_unfold_the_batch():
    enc = ConvNet().eval()
    assert find_layer_stack(enc)[0] == "backbone"
    x = torch.randn(3, 8, 8)
    feats = layer_features(enc, x)
    assert [n for n, _ in feats] == ["backbone.0", "backbone.1", "feature"]
    assert [tuple(t.shape) for _, t in feats] == [(3, 4), (3, 6), (3, 6)]
    # the last block pooled over space and patches is the encoder's feature (two means, maybe summed otherwise)
    assert_close(feats[1][1], feats[2][1], reorder_tol(scale_of(feats[2][1]), Shape(2, 16)), "pooled last block")


@pytest.mark.numerics
def test_vit_blocks_drop_the_cls_token_and_a_layer_outputs_method_wins():
    from acula.encoders import create

    enc = create("opera-gt", preset="tiny").eval()
    x = torch.randn(2, 256, 64)
    feats = layer_features(enc, x)
    depth = len(enc.blocks)
    assert [n for n, _ in feats] == [f"blocks.{i}" for i in range(depth)] + ["feature"]
    # forward_feature = LayerNorm(mean of patch tokens of the last block): the hook saw the same tokens
    with torch.inference_mode():
        got = enc.norm(feats[depth - 1][1])
        assert_close(got, feats[-1][1], reorder_tol(scale_of(got), Shape(2, 256)), "norm(mean of tokens)")  # mean, LN

    enc.layer_outputs = lambda x: [("only", x.mean(1))]
    assert [n for n, _ in layer_features(enc, x)] == ["only"]


@pytest.mark.numerics
def test_cka_matrix_is_one_for_identical_and_invariant_to_rotation_and_scale():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(40, 5))
    q, _ = np.linalg.qr(rng.normal(size=(5, 5)))
    text = np.stack([a @ q * 3.0, rng.normal(size=(40, 5))])
    m = cka_matrix([("a", a), ("noise", rng.normal(size=(40, 7)))], text)
    cka_tol = reorder_tol(1.0, Shape(4, 40 * 40), u=U64)  # float64: Grams, centring, 3 HSIC sums, the ratio
    assert m.shape == (2, 2)
    assert_close(m[0, 0], 1.0, cka_tol, "CKA of a rotated, scaled copy")
    assert (m >= 0).all() and (m <= 1).all() and m[0, 1] < 0.6
    # the same number the alignment loss computes
    from acula.align.losses import linear_cka

    ref = float(linear_cka(torch.as_tensor(a), torch.as_tensor(text[1])))
    assert_close(m[0, 1], ref, reorder_tol(1.0, Shape(4, 40 * 40), evaluations=1), "vs the loss (float32)")
    assert cka_matrix([("constant", np.ones((40, 3)))], text)[0, 0] == 0.0


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Ten synthetic heart/lung/cough recordings with reports from the real builders."""
    from acula.data import synthetic
    from acula.text.reports import build_reports

    root = tmp_path_factory.mktemp("cka")
    manifest = synthetic.build(root / "synth", n_heart=1, n_lung=1, n_cough=2, seed=0, progress=False)
    src = list(csv.DictReader(manifest.open(encoding="utf-8")))
    rows = []
    for ds in sorted({r["dataset"] for r in src}):
        for rep in build_reports(ds, records=[r for r in src if r["dataset"] == ds]):
            rows.append({"audio_path": f"synth/{rep['audio_path']}", "Gen_Report": rep["Gen_Report"]})
    out = root / "pairs.csv"
    with open(out, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=["audio_path", "Gen_Report"])
        w.writeheader()
        w.writerows(rows)
    return root, out, len(rows)


def test_cka_before_and_after_gives_two_heatmaps(corpus):
    from acula.encoders import create
    from acula.encoders.checkpoint import save_encoder

    root, manifest, n = corpus
    torch.manual_seed(1)
    before = save_encoder(create("opera-gt", preset="tiny"), root / "before.safetensors")
    torch.manual_seed(2)
    after = save_encoder(create("opera-gt", preset="tiny"), root / "after.safetensors")
    parser = build_parser()
    out = root / "cka"
    args = parser.parse_args(["analyze", "cka", "--manifest", str(manifest), "--encoder", "opera-gt", "--preset",
                              "tiny", "--checkpoint", str(before), "--checkpoint-after", str(after),
                              "--teacher", "minilm", "--max-recordings", "8", "--batch-size", "4",
                              "--out", str(out)])
    assert args.func(args) == 0

    from acula.text.teacher import Teacher

    teacher_layers = Teacher("minilm").num_layers + 1
    mats = {}
    for label in ("before", "after"):
        mat, rows, cols = read_matrix_csv(out / f"cka_{label}.csv")
        assert mat.shape == (4 + 1, teacher_layers)  # tiny preset: 4 blocks + the pooled feature
        assert rows[-1] == "feature" and cols[0] == "embeddings"
        assert np.isfinite(mat).all() and (mat >= 0).all() and (mat <= 1).all() and mat.max() > 0.05
        mats[label] = mat
    assert not np.allclose(mats["before"], mats["after"])  # different weights, different matrices
    png = (out / "cka.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert width > height  # two panels side by side
    summary = json.loads((out / "cka.json").read_text())
    assert summary["recordings"] == 8 and summary["checkpoints"]["after"] == str(after)
    assert set(summary["best"]) == {"before", "after"}


def test_single_checkpoint_writes_one_matrix(corpus):
    root, manifest, n = corpus
    parser = build_parser()
    out = root / "single"
    args = parser.parse_args(["analyze", "cka", "--manifest", str(manifest), "--encoder", "opera-gt", "--preset",
                              "tiny", "--max-recordings", "0", "--out", str(out)])
    assert args.func(args) == 0
    mat, rows, _ = read_matrix_csv(out / "cka.csv")
    assert mat.shape[0] == 5 and json.loads((out / "cka.json").read_text())["recordings"] == n
    assert not (out / "cka_after.csv").exists()
