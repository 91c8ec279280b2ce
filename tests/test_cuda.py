"""On a GPU (skipped without one; `benchmarks/device_check.sh` runs them): the encoders and an alignment step give
the CPU's numbers, in fp32 and under bf16 autocast."""

import numpy as np
import pytest
import torch

from acula.align.model import AculaModel
from acula.align.trainer import AlignmentData, TrainConfig, Trainer
from acula.encoders import create
from numerics import assert_close, encoder_tol

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device (benchmarks/device_check.sh)")]


@pytest.fixture(autouse=True)
def no_tf32():
    """TF32 rounds matmul inputs to 10 bits: the fp32 comparison is meant against true fp32."""
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def _logmel(n=8, frames=256, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).random((n, frames, 64), dtype=np.float32))


@pytest.mark.parametrize("name", ["opera-gt", "opera-ct", "opera-ce"])
def test_encoder_on_gpu_matches_cpu(name):
    torch.manual_seed(0)
    enc = create(name).eval()
    x = _logmel(4, enc.contract.frames)
    with torch.inference_mode():
        cpu = enc.forward_feature(x)
        gpu = enc.cuda().forward_feature(x.cuda()).cpu()
    assert_close(gpu, cpu, encoder_tol(enc, cpu), f"{name} cuda vs cpu")


@pytest.mark.parametrize("name", ["opera-gt", "opera-ct", "opera-ce"])
def test_bf16_autocast_features_keep_their_direction(name):
    torch.manual_seed(0)
    enc = create(name).eval().cuda()
    x = _logmel(16, enc.contract.frames).cuda()
    with torch.inference_mode():
        full = enc.forward_feature(x).float()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            half = enc.forward_feature(x).float()
    cos = torch.nn.functional.cosine_similarity(full, half, dim=1)
    assert cos.min() >= 0.999, f"{name}: bf16 cosine {cos.min():.5f}"


@pytest.mark.parametrize("mode", ["full", "masked"])
def test_bf16_alignment_steps_on_gpu(tmp_path, mode):
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    data = AlignmentData(rng.random((64, 128, 64), dtype=np.float32), rng.normal(size=(64, 32)).astype(np.float32))
    model = AculaModel(create("opera-gt"), text_dim=32)
    cfg = TrainConfig(epochs=1, batch_size=16, lr=1e-4, mixed_precision="bf16", align_features=mode)
    hist = Trainer(model, data, cfg, tmp_path).fit(resume=False)
    assert len(hist) == 4 and all(np.isfinite(h["loss"]) and h["mam"] > 0 and h["align"] != 0 for h in hist)
    assert next(model.parameters()).device.type == "cuda"
