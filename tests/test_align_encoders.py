"""A short `acula align` run from the CLI works for every kind of student encoder."""

import numpy as np
import pytest
import soundfile as sf
import torch

from acula.cli import main


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    d = tmp_path_factory.mktemp("align-enc")
    rng = np.random.default_rng(0)
    lines = ["audio_path,Gen_Report,subject_id"]
    reports = ["Crackles are present at the left base.", "No crackles or wheezes.",
               "A holosystolic murmur graded III/VI.", "Murmur absent, normal heart sounds."]
    for i in range(8):
        t = np.arange(16000 * 3) / 16000
        wave = 0.1 * rng.normal(size=t.size) + 0.2 * np.sin(2 * np.pi * (100 + 50 * i) * t)
        sf.write(d / f"c{i}.wav", wave.astype(np.float32), 16000)
        lines.append(f"c{i}.wav,{reports[i % 4]},s{i}")
    (d / "m.csv").write_text("\n".join(lines) + "\n")
    return d / "m.csv"


CASES = [
    ["--encoder", "opera-gt", "--preset", "tiny"],
    ["--encoder", "opera-ct", "--preset", "tiny"],
    ["--encoder", "opera-ce", "--preset", "tiny"],
    ["--encoder", "yamnet", "--preset", "tiny"],
]


@pytest.mark.parametrize("enc", CASES, ids=lambda c: c[1])
def test_align_cli_runs_for_each_encoder(manifest, tmp_path, enc):
    out = tmp_path / "run"
    rc = main(["align", "--manifest", str(manifest), *enc, "--epochs", "1", "--batch-size", "4", "--out", str(out)])
    assert rc == 0
    ck = torch.load(out / "acula_final.pt", weights_only=True)
    assert ck["config"]["encoder"]["name"] == enc[1]
    assert (out / "encoder.safetensors").is_file()


def test_align_cli_real_yamnet_from_tflite(manifest, tmp_path, shared_dir):
    tflite = shared_dir / "weights" / "yamnet" / "yamnet.tflite"
    if not tflite.is_file():
        pytest.skip(f"{tflite} not found")
    out = tmp_path / "run"
    assert main(["align", "--manifest", str(manifest), "--encoder", "yamnet", "--checkpoint", str(tflite),
                 "--epochs", "1", "--batch-size", "4", "--out", str(out)]) == 0
    # the aligned encoder loads back through the same strict loader
    from acula.encoders import create

    m = create("yamnet", checkpoint=str(out / "encoder.safetensors"))
    assert m.feature_dim == 1024


def test_hf_towers_run_through_the_cli(manifest, tmp_path):
    """hf-ast from a local directory (a small random config: no network) through embed and align."""
    transformers = pytest.importorskip("transformers")
    d = tmp_path / "ast"
    torch.manual_seed(0)
    cfg = transformers.ASTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                                 num_mel_bins=32, max_length=64)
    transformers.ASTModel(cfg).save_pretrained(d)
    transformers.ASTFeatureExtractor(num_mel_bins=32, max_length=64).save_pretrained(d)
    enc = ["--encoder", "hf-ast", "--hf-model", str(d)]
    assert main(["embed", str(manifest), *enc, "--out", str(tmp_path / "e.npz")]) == 0
    with np.load(tmp_path / "e.npz") as z:
        assert z["embeddings"].shape == (8, 32) and np.isfinite(z["embeddings"]).all()
    out = tmp_path / "run"
    assert main(["align", "--manifest", str(manifest), *enc, "--epochs", "1", "--batch-size", "4",
                 "--out", str(out)]) == 0
    assert torch.load(out / "acula_final.pt", weights_only=True)["config"]["encoder"]["name"] == "hf-ast"


def test_teacher_layer_list_is_averaged(manifest, tmp_path):
    """`--teacher-layer -2,-1` pools two hidden states and averages them (issue: layer index or a mean)."""
    import argparse
    import json

    from acula.cli.align import _layers

    assert _layers("-1") == -1 and _layers("-2,-1") == (-2, -1) and _layers("3,") == (3,)
    with pytest.raises(argparse.ArgumentTypeError):
        _layers(",")
    out = tmp_path / "run"
    assert main(["align", "--manifest", str(manifest), "--encoder", "opera-gt", "--preset", "tiny",
                 "--teacher-layer=-2,-1", "--epochs", "1", "--batch-size", "4", "--out", str(out)]) == 0
    teacher = json.loads(torch.load(out / "acula_final.pt", weights_only=True)["config"]["teacher"])
    assert teacher["layer"] == [5, 6]  # MiniLM: 6 layers + the embeddings
