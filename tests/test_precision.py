"""bf16 extraction: detected from the hardware, used only where native, and close to fp32 (cosine >= 0.999)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from acula.encoders import create
from acula.encoders.precision import autocast, bf16_native, cpu_flags, resolve_precision


def test_resolve_precision():
    assert resolve_precision("fp32") == "fp32" and resolve_precision("bf16") == "bf16"
    assert resolve_precision("auto", "cpu") == ("bf16" if bf16_native("cpu") else "fp32")
    assert bf16_native("cpu") == bool({"avx512_bf16", "amx_bf16"} & cpu_flags())
    with pytest.raises(ValueError, match="precision"):
        resolve_precision("fp16")


def test_fp32_autocast_is_a_no_op():
    with autocast("fp32", "cpu"):
        assert not torch.is_autocast_enabled("cpu")
    with autocast("bf16", "cpu"):
        assert torch.is_autocast_enabled("cpu")


@pytest.mark.skipif(not bf16_native("cpu"), reason="this CPU has no native bf16 (no avx512_bf16 / amx_bf16 flag), "
                                                    "so acula extracts in fp32 here and the bf16 path is not checked")
@pytest.mark.parametrize("name", ["opera-gt", "opera-ct", "opera-ce"])
def test_bf16_embeddings_match_fp32(name):
    """Random weights, random log-mel: bf16 autocast keeps every clip's embedding direction (cosine >= 0.999)."""
    torch.manual_seed(0)
    enc = create(name, preset="tiny").eval()
    x = torch.rand(3, 256, 64)
    with torch.inference_mode():
        ref = enc.forward_feature(x).float()
        with autocast("auto", "cpu"):
            low = enc.forward_feature(x).float()
    ref, low = ref.double(), low.double()  # no eps: random-init OPERA-CE features have norms near 1e-12
    cos = (ref * low).sum(1) / (ref.norm(dim=1) * low.norm(dim=1))
    assert cos.min() >= 0.999, cos.tolist()


@pytest.mark.skipif(not bf16_native("cpu"), reason="this CPU has no native bf16 (no avx512_bf16 / amx_bf16 flag)")
def test_embed_files_bf16(tmp_path):
    """The extraction pipeline itself under precision="auto": same files, same order, cosine >= 0.999."""
    import soundfile as sf

    from acula.extract import embed_files

    rng = np.random.default_rng(0)
    paths = []
    for i, seconds in enumerate((3.0, 12.0)):
        p = tmp_path / f"c{i}.wav"
        sf.write(p, (0.1 * rng.standard_normal(int(seconds * 8000))).astype(np.float32), 8000)
        paths.append(str(p))
    enc = create("opera-gt", preset="tiny")
    a = embed_files(enc, paths, policy="opera", progress=False)
    b = embed_files(enc, paths, policy="opera", progress=False, precision="auto")
    assert a.paths == b.paths == paths
    cos = (a.embeddings * b.embeddings).sum(1) / np.linalg.norm(a.embeddings, axis=1) / np.linalg.norm(b.embeddings,
                                                                                                       axis=1)
    assert cos.min() >= 0.999, cos


def test_training_precision_auto_follows_the_hardware(tmp_path):
    """`--mixed-precision auto`: bf16 autocast where native, fp32 ("no") elsewhere; explicit choices are kept."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    from acula.align.model import AculaModel
    from acula.align.trainer import AlignmentData, TrainConfig, Trainer, training_precision
    from toy_encoder import ToyEncoder

    want = "bf16" if bf16_native("cpu") else "no"
    assert training_precision("auto", "cpu") == want
    assert training_precision("no", "cpu") == "no" and training_precision("bf16", "cpu") == "bf16"
    rng = np.random.default_rng(0)
    data = AlignmentData(rng.random((8, 64, 64), dtype=np.float32), rng.normal(size=(8, 10)).astype(np.float32))
    auto = TrainConfig(batch_size=8, mixed_precision="auto")
    AcceleratorState._reset_state()  # Accelerate keeps one precision per process: other tests set theirs
    try:
        assert Trainer(AculaModel(ToyEncoder(), text_dim=10), data, auto, tmp_path).cfg.mixed_precision == want
        acc = Accelerator(cpu=True)
        given = Trainer(AculaModel(ToyEncoder(), text_dim=10), data, auto, tmp_path, accelerator=acc)
        assert given.cfg.mixed_precision == str(acc.mixed_precision)  # a given accelerator's precision is what runs
    finally:
        AcceleratorState._reset_state()
