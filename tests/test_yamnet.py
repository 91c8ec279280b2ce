"""YAMNet: front end, TF "SAME" convs, TFLite conversion, MAM head, and real-weight behaviour.

Tests marked with `shared_dir` use the real YAMNet TFLite file and heart recordings from ../shared
and skip without them; the interpreter comparison also needs `ai_edge_litert` (optional).
"""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from acula.encoders import create
from acula.encoders.tflite_reader import TFLiteModel
from acula.encoders.yamnet import (
    MaskedTileHead,
    SameConv2d,
    YAMNetFrontend,
    from_tiles,
    masked_tile_loss,
    read_class_map,
    to_tiles,
)
from numerics import LAMBDA, U32, Shape, assert_close, net_shape, reorder_tol, scale_of

SR = 16000
pytestmark = pytest.mark.numerics
FRONT_END = Shape(2, 512)  # |DFT| (512 points) and the mel sum (257 bins): not nn layers, so added by hand


def tol(model, *arrays) -> float:
    """Two float32 evaluations of the network behind `model`'s front end (another batch, kernel or CPU)."""
    return reorder_tol(scale_of(*arrays), net_shape(model) + FRONT_END)


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return create("yamnet", preset="tiny").eval()


@pytest.fixture(scope="module")
def yamnet_dir(shared_dir):
    d = shared_dir / "weights" / "yamnet"
    if not (d / "yamnet.tflite").is_file():
        pytest.skip(f"YAMNet TFLite file not found in {d}")
    return d


@pytest.fixture(scope="module")
def real(yamnet_dir):
    return create(
        "yamnet", weights=str(yamnet_dir / "yamnet.tflite"), class_map=str(yamnet_dir / "yamnet_class_map.csv")
    ).eval()


def _heart_clips(shared_dir, step):
    soundfile, soxr = pytest.importorskip("soundfile"), pytest.importorskip("soxr")
    root = shared_dir / "data" / "heart-yaseen"
    if not (root / "labels.csv").is_file():
        pytest.skip(f"heart recordings not found in {root}")
    with open(root / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))[::step]
    for row in rows:
        x, sr = soundfile.read(root / row["path"], dtype="float32")
        yield row, soxr.resample(x, sr, SR).astype(np.float32)


# ---- front end ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "n, patches", [(800, 1), (15600, 1), (15601, 2), (15600 + 7680, 2), (15600 + 7681, 3), (131000, 17)]
)
def test_patch_count_follows_yamnet_padding(n, patches):
    fe = YAMNetFrontend()
    out = fe.patches(torch.zeros(2, n))
    assert out.shape == (2, patches, 96, 64)


def test_log_mel_matches_independent_numpy_stft():
    fe = YAMNetFrontend()
    rng = np.random.default_rng(0)
    x = rng.standard_normal(4000).astype(np.float32) * 0.1
    ours = fe.log_mel(torch.from_numpy(x)[None])[0].numpy()
    hann = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(400) / 400)
    frames = np.stack([x[i : i + 400] * hann for i in range(0, len(x) - 400 + 1, 160)])
    mag = np.abs(np.fft.rfft(frames, n=512))
    mel_w = fe.mel.numpy().astype(np.float64)
    mel = mag @ mel_w
    ref = np.log(mel + 0.001)
    assert ours.shape == ref.shape == (1 + (4000 - 400) // 160, 64)
    # float32 against float64: each |X_k| sums 400 windowed samples (error <= LAMBDA sqrt(400) u sum|frame|), a mel
    # band adds its weights' share of that and its own 257-term sum; log(mel + 0.001) divides by mel + 0.001
    d_mag = LAMBDA * math.sqrt(400) * U32 * np.abs(frames).sum(1, keepdims=True)
    d_mel = d_mag * mel_w.sum(0)[None] + LAMBDA * math.sqrt(257) * U32 * mel
    assert_close(ours, ref, d_mel / (mel + 0.001) + U32 * np.abs(ref), "log-mel vs float64 numpy")


def test_sine_lands_in_the_right_mel_band():
    fe = YAMNetFrontend()
    t = torch.arange(SR) / SR
    mel = fe.log_mel(torch.sin(2 * math.pi * 1000.0 * t)[None])[0].mean(0)
    hz_to_mel = lambda hz: 1127.0 * math.log1p(hz / 700.0)  # noqa: E731
    edges = np.linspace(hz_to_mel(125.0), hz_to_mel(7500.0), 66)
    centers = 700.0 * (np.exp(edges[1:-1] / 1127.0) - 1)
    assert abs(int(mel.argmax()) - int(np.abs(centers - 1000.0).argmin())) <= 1
    assert fe.mel[0].abs().sum() == 0, "the DC bin carries no mel weight (tf.signal convention)"


@pytest.mark.parametrize("size, pads", [(6, (0, 1)), (7, (1, 1)), (5, (1, 1))])
def test_same_conv_pads_like_tensorflow(size, pads):
    conv = SameConv2d(1, 1, 3, stride=2, bias=False)
    x = torch.randn(1, 1, size, size)
    ref = F.conv2d(F.pad(x, (*pads, *pads)), conv.weight, stride=2)
    assert conv(x).shape[-1] == math.ceil(size / 2)
    assert_close(conv(x), ref, reorder_tol(scale_of(ref), Shape(1, 9)), "SAME conv")  # one 3x3 sum, maybe reordered


# ---- tiny network --------------------------------------------------------------------------------


def test_tiny_shapes_scores_and_batch_invariance(tiny):
    w = torch.randn(3, SR * 2) * 0.1
    with torch.no_grad():
        feats = tiny.forward_feature(w)
        patches = tiny.forward_patches(w)
        one = torch.cat([tiny.forward_feature(w[i : i + 1]) for i in range(3)])
    assert feats.shape == (3, tiny.feature_dim) and tiny.feature_dim == 1024 // 16
    assert patches.shape == (3, 4, tiny.feature_dim)
    assert_close(feats, patches.mean(1), tol(tiny, feats), "feature = mean of patches")
    assert_close(feats, one, tol(tiny, feats), "alone vs in a batch")
    scores = tiny.predict(w)
    assert scores.shape == (3, 4, 521) and ((scores >= 0) & (scores <= 1)).all()
    assert torch.isfinite(tiny.forward_feature(torch.zeros(1, 300))).all(), "a clip shorter than one patch is padded"


def test_rejects_non_waveform_input(tiny):
    with pytest.raises(ValueError, match=r"expected waveforms of shape \(batch, samples\)"):
        tiny.forward_feature(torch.zeros(2, 96, 64))
    assert tiny.contract.frontend == "waveform" and tiny.contract.sample_rate == SR


def test_factory_errors(tmp_path):
    with pytest.raises(ValueError, match="needs weights=PATH"):
        create("yamnet")
    with pytest.raises(FileNotFoundError, match="not found"):
        create("yamnet", weights=str(tmp_path / "missing.tflite"))
    bad = tmp_path / "w.bin"
    bad.write_bytes(b"x")
    with pytest.raises(ValueError, match=r"\.tflite or \.safetensors"):
        create("yamnet", weights=str(bad))
    with pytest.raises(ValueError, match="unknown preset"):
        create("yamnet", preset="huge")
    notflite = tmp_path / "x.tflite"
    notflite.write_bytes(b"\0" * 64)
    with pytest.raises(ValueError, match="not a TFLite flatbuffer"):
        create("yamnet", weights=str(notflite))
    assert create("yamnet", random_init=True).feature_dim == 1024


def test_safetensors_round_trip_keeps_weights_and_class_names(tiny, tmp_path):
    tiny.class_names = [f"class {i}" for i in range(521)]
    path = tmp_path / "tiny.safetensors"
    tiny.save_safetensors(path)
    tiny.class_names = None
    assert [p.name for p in tmp_path.iterdir()] == ["tiny.safetensors"], "no temporary file left behind"
    back = create("yamnet", weights=str(path), preset="tiny")
    w = torch.randn(2, 20000) * 0.1
    with torch.no_grad():
        torch.testing.assert_close(back.forward_feature(w), tiny.forward_feature(w))
    assert back.class_names[3] == "class 3"
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(1)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ValueError, match="not a converted YAMNet file"):
        create("yamnet", weights=str(tmp_path / "other.safetensors"))
    two = tmp_path / "two.csv"
    two.write_text("index,mid,display_name\n0,/m/a,A\n1,/m/b,B\n")
    with pytest.raises(ValueError, match="two.csv has 2 class names"):
        create("yamnet", weights=str(path), class_map=str(two))


def test_class_map_errors(tmp_path):
    bad = tmp_path / "map.csv"
    bad.write_text("index,name\n0,a\n")
    with pytest.raises(ValueError, match="map.csv"):
        read_class_map(bad)
    bad.write_text("index,mid,display_name\n0,/m/a,A\n2,/m/b,B\n")
    with pytest.raises(ValueError, match="row 3 has index 2"):
        read_class_map(bad)


# ---- masked-audio modelling ----------------------------------------------------------------------


def test_tiles_round_trip():
    x = torch.randn(2, 96, 64)
    tiles = to_tiles(x, (16, 16))
    assert tiles.shape == (2, 24, 256)
    torch.testing.assert_close(tiles[0, 1], x[0, :16, 16:32].reshape(-1))  # time-major tile order
    torch.testing.assert_close(from_tiles(tiles, (16, 16), (96, 64)), x)


def test_masked_tile_loss_hides_masked_tiles_only():
    spec = torch.randn(2, 40, 20)  # 40x20 leaves a 8-frame / 4-bin remainder for 16x16 tiles
    seen = {}

    def encode(x):
        seen["x"] = x
        return x.flatten(1)[:, :8]

    head = MaskedTileHead(8, 2, 256)
    noise = torch.tensor([[0.1, 0.9], [0.8, 0.2]])
    loss, pred, mask = masked_tile_loss(spec, encode, head, (16, 16), 0.5, noise)
    assert mask.tolist() == [[0.0, 1.0], [1.0, 0.0]] and pred.shape == (2, 2, 256)
    x, mean = seen["x"], spec.mean(dim=(1, 2))
    assert torch.equal(x[0, 16:32, :16], mean[0].expand(16, 16)), "masked tile is replaced by the clip mean"
    assert torch.equal(x[0, :16, :16], spec[0, :16, :16]), "kept tile is untouched"
    assert torch.equal(x[1, :16, :16], mean[1].expand(16, 16))
    assert torch.equal(x[:, 32:], spec[:, 32:]) and torch.equal(x[:, :, 16:], spec[:, :, 16:]), "remainder unmasked"
    assert torch.isfinite(loss) and loss.ndim == 0


def test_yamnet_mam_masks_learns_and_reaches_the_backbone():
    torch.manual_seed(0)
    model = create("yamnet", preset="tiny", mam_mask_ratio=0.5)
    w = torch.randn(2, 23280) * 0.1  # exactly 2 patches
    noise = torch.rand(2, 2 * 24)
    loss, pred, mask = model.forward_mam(w, noise=noise)
    assert pred.shape == (2, 48, 256) and mask.shape == (2, 48)
    assert (mask.view(4, 24).sum(1) == 12).all(), "half of each patch's tiles are masked"
    with pytest.raises(ValueError, match="noise"):
        model.forward_mam(w, noise=torch.rand(2, 5))
    torch.testing.assert_close(model.forward_mam(w, noise=noise)[0], loss)
    loss.backward()
    assert model.backbone.layer1.conv.weight.grad.abs().sum() > 0
    assert model.mam_head.proj.weight.grad.abs().sum() > 0
    assert all(k.startswith("mam_head.") for k in model.ignorable_missing) and len(model.ignorable_missing) == len(
        model.mam_head.state_dict()
    )
    w, noise = w[:, :15600], noise[:, :24]  # one patch each: enough to see it learn
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = float(model.forward_mam(w, noise=noise)[0].detach())
    for _ in range(10):
        opt.zero_grad()
        model.forward_mam(w, noise=noise)[0].backward()
        opt.step()
    assert float(model.forward_mam(w, noise=noise)[0].detach()) < 0.9 * first


# ---- real weights (../shared) --------------------------------------------------------------------


def test_reader_lists_the_yamnet_graph(yamnet_dir):
    m = TFLiteModel(yamnet_dir / "yamnet.tflite")
    assert m.tensors[m.inputs[0]].shape == (1, 15600)
    ops = [op.op for op in m.ops]
    assert ops.count("CONV_2D") == 14 and ops.count("DEPTHWISE_CONV_2D") == 13 and ops[-1] == "LOGISTIC"
    k = m.tensors[m.ops[21].inputs[1]]  # layer2 pointwise kernel, int8 with one scale
    assert k.dtype == "int8" and k.scale.size == 1
    np.testing.assert_allclose(m.array(k.index), m.raw(k.index).astype(np.float32) * k.scale[0], rtol=U32)  # 1 product
    assert "CONV_2D" in m.summary()
    # per-channel scales broadcast along quantized_dimension
    k.scale, k.zero_point, k.quantized_dimension = np.linspace(0.1, 1.0, 64, dtype=np.float32), np.ones(64, int), 0
    expected = (m.raw(k.index).astype(np.float64) - 1) * k.scale[:, None, None, None]
    np.testing.assert_allclose(m.array(k.index), expected, rtol=2 * U32)  # float32 scale and product vs float64


def test_front_end_replays_the_tflite_graph(real, yamnet_dir, shared_dir):
    """Run the graph's front-end ops (framing gather, window, pad, DFT, magnitude, mel FC + bias, log)
    in numpy with the constants stored in the file, exact DFT in place of its int8 DFT matrices."""
    m = TFLiteModel(yamnet_dir / "yamnet.tflite")
    ops = m.ops
    assert [op.op for op in ops[:15]] == (
        "RESHAPE SLICE RESHAPE GATHER RESHAPE MUL PAD "  # waveform -> windowed 400-sample frames padded to 512
        "FULLY_CONNECTED MUL FULLY_CONNECTED MUL ADD SQRT "  # |DFT| as two matmuls
        "FULLY_CONNECTED LOG"  # log(mel + offset)
    ).split()
    rows = tuple(m.raw(ops[2].inputs[1]))  # (195, 80): the waveform in 80-sample chunks
    gather_idx = m.raw(ops[3].inputs[1])  # (96, 5): 5 chunks per 400-sample frame
    window = m.array(ops[5].inputs[1])[0]
    pads = tuple(m.raw(ops[6].inputs[1])[1])
    mel_w, mel_b = m.array(ops[13].inputs[1]).T, m.array(ops[13].inputs[2])
    half_step = m.tensors[ops[13].inputs[1]].scale[0] / 2  # the file's mel weights are int8: ours differ by <= this
    for _, x in _heart_clips(shared_dir, step=200):
        x = np.pad(x[:15600], (0, max(0, 15600 - len(x))))
        frames = x.reshape(rows)[gather_idx].reshape(len(gather_idx), -1) * window
        padded = np.pad(frames, ((0, 0), pads))
        mag = np.abs(np.fft.rfft(padded, axis=-1))
        ref = np.log(mag @ mel_w + mel_b)
        with torch.no_grad():
            ours = real.frontend.patches(torch.from_numpy(x)[None])[0, 0].numpy()
        assert ours.shape == ref.shape == (96, 64)
        # a band's energy moves by <= half a step per DFT bin (int8 weights) plus float32 rounding (400-term DFT
        # sums, the 257-bin mel sum); the log moves by log1p(that / the smaller of the two energies)
        d_mel = (half_step + LAMBDA * math.sqrt(400) * U32) * mag.sum(1, keepdims=True) \
            + LAMBDA * math.sqrt(257) * U32 * np.exp(ref) + np.abs(mel_b - 0.001)
        assert_close(ours, ref, np.log1p(d_mel / np.exp(np.minimum(ours, ref))), "front end vs the TFLite graph")


def test_converted_yamnet_shape_and_safetensors(real, yamnet_dir, tmp_path):
    assert real.feature_dim == 1024 and len(real.class_names) == 521
    n = sum(p.numel() for k, p in real.named_parameters() if not k.startswith("mam_head."))
    assert 3_600_000 < n < 3_800_000  # YAMNet has 3.7 M parameters
    # the TFLite mel matrix is this front end's, up to int8 rounding
    m = TFLiteModel(yamnet_dir / "yamnet.tflite")
    mel = [t for t in m.tensors if t.shape == (64, 257)][0]
    # half a quantisation step, plus the float32 rounding of the dequantised weight (<= 1) and of ours
    assert np.abs(m.array(mel.index).T - real.frontend.mel.numpy()).max() <= mel.scale[0] / 2 + 2 * U32
    real.save_safetensors(tmp_path / "yamnet.safetensors")
    back = create("yamnet", weights=str(tmp_path / "yamnet.safetensors"))
    w = torch.randn(1, 20000) * 0.1
    with torch.no_grad():
        a = real.forward_feature(w)
        assert_close(back.forward_feature(w), a, tol(real, a), "reloaded")  # the same weights, evaluated twice
    assert back.class_names == real.class_names


def test_heart_sounds_are_recognised_as_heart_sounds(real, shared_dir):
    heart = {real.class_names.index("Heart sounds, heartbeat"), real.class_names.index("Heart murmur")}
    n = real.frontend.min_samples + real.frontend.patch_hop_samples  # first 1.45 s = 2 patches, one batch
    clips = [np.pad(x[:n], (0, max(0, n - len(x)))) for _, x in _heart_clips(shared_dir, step=20)]
    assert len(clips) == 40  # 40 of the 800 files, all four valve classes
    top = real.predict(torch.from_numpy(np.stack(clips))).mean(1).argmax(1)
    hits = sum(int(i) in heart for i in top)
    assert hits / len(clips) >= 0.75, f"only {hits}/{len(clips)} heart recordings have a heart class on top"


@pytest.mark.filterwarnings("ignore:.*experimental_preserve_all_tensors")
def test_agrees_with_the_tflite_interpreter(real, yamnet_dir, shared_dir):
    """The interpreter runs hybrid int8 ops (activations quantised on the fly) and its front end multiplies
    by int8 DFT and mel matrices: the front end's bound below follows from those steps, so quiet mel bins
    (near the log(0.001) floor) may differ by several log units and loud ones by little. The network's
    hybrid int8 activations (28 layers) are held to thresholds stated here, not derived: scores within 0.1,
    embeddings at cosine > 0.999, the top class on all clips but one."""
    litert = pytest.importorskip("ai_edge_litert.interpreter")
    it = litert.Interpreter(model_path=str(yamnet_dir / "yamnet.tflite"), experimental_preserve_all_tensors=True)
    it.allocate_tensors()
    m = TFLiteModel(yamnet_dir / "yamnet.tflite")
    mel_out = m.outputs[1]
    emb_out = [op.outputs[0] for op in m.ops if op.op == "MEAN"][0]
    ops = m.ops
    rows, gather_idx = tuple(m.raw(ops[2].inputs[1])), m.raw(ops[3].inputs[1])
    window, pads = m.array(ops[5].inputs[1])[0], tuple(m.raw(ops[6].inputs[1])[1])
    dft = [(m.array(ops[i].inputs[1]), m.tensors[ops[i].inputs[1]].scale[0]) for i in (7, 9)]  # int8 cos / sin
    mel_w, mel_step = np.abs(m.array(ops[13].inputs[1])), m.tensors[ops[13].inputs[1]].scale[0]
    rng = np.random.default_rng(0)
    clips = [x[:15600] for _, x in _heart_clips(shared_dir, step=160)]
    clips.append(rng.standard_normal(15600).astype(np.float32) * 0.1)
    top_agree = 0
    for x in clips:
        x = np.pad(x, (0, 15600 - len(x)))
        it.set_tensor(m.inputs[0], x[None])
        it.invoke()
        mel_t, emb_t, score_t = it.get_tensor(mel_out), it.get_tensor(emb_out)[0], it.get_tensor(m.outputs[0])[0]
        with torch.no_grad():
            w = torch.from_numpy(x)[None]
            mel = real.frontend.patches(w)[0, 0].numpy()
            score = real.predict(w)[0, 0].numpy()
            emb_on_t = real.embed_patches(torch.from_numpy(mel_t)[None])
            score_on_t = torch.sigmoid(real.classifier(emb_on_t))[0].numpy()
        # front end, per element: a hybrid int8 product sum_n W x_n moves by <= half the weight step x sum|x| +
        # half the input's step (its row's max / 127) x sum|W| (+ their product); |X| by the sum of both parts'
        # moves; the mel sum (int8 weights, |X| quantised per row) likewise; log(mel) by log1p(move / mel)
        frames = np.pad((x.reshape(rows)[gather_idx].reshape(len(gather_idx), -1) * window).astype(np.float64),
                        ((0, 0), pads))
        x_step, x_l1 = np.abs(frames).max(1, keepdims=True) / 127, np.abs(frames).sum(1, keepdims=True)
        d_mag = sum(w_step / 2 * x_l1 + x_step / 2 * np.abs(w).sum(1)[None] + w_step / 2 * x_step / 2 * w.shape[1]
                    for w, w_step in dft)
        mag = np.abs(np.fft.rfft(frames, axis=1)) + d_mag
        d_mel = d_mag @ mel_w.T + mag.max(1, keepdims=True) / 127 / 2 * mel_w.sum(1)[None] \
            + mel_step / 2 * mag.sum(1, keepdims=True)
        assert_close(mel, mel_t, np.log1p(d_mel / np.exp(np.minimum(mel, mel_t))), "front end vs the interpreter")
        assert np.abs(score_on_t - score_t).max() < 0.1
        cos = float(emb_on_t[0].numpy() @ emb_t / np.linalg.norm(emb_t) / np.linalg.norm(emb_on_t[0].numpy()))
        assert cos > 0.999
        top_agree += int(score.argmax() == score_t.argmax())
    assert top_agree >= len(clips) - 1
    np.testing.assert_allclose(score, score_t, atol=0.03)  # broadband noise: no quiet bins, end to end
