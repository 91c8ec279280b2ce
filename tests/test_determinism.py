"""Determinism: a clip's embedding ignores its batch, and a seeded alignment run repeats bit for bit.

Batch independence matters because extraction groups windows of different clips (and the resume
logic regroups them); any batch-level statistic (batch norm in train mode, padding to the
longest, masked means over the batch) would make a clip's features depend on its neighbours.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from acula.cli import main
from acula.encoders import create, list_encoders
from acula.extract import embed_files
from numerics import assert_close, encoder_tol

SR = 16000
ENCODERS = [("opera-gt", "tiny"), ("opera-gt", "base"), ("opera-ct", "tiny"), ("opera-ce", "tiny"), ("yamnet", "tiny")]


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> list[str]:
    """Six 1.5-s clips of different sounds plus two of other lengths (they force extra batch splits)."""
    root = tmp_path_factory.mktemp("clips")
    rng = np.random.default_rng(0)
    paths = []
    for i, seconds in enumerate([1.5] * 6 + [1.25, 2.0]):
        t = np.arange(int(seconds * SR)) / SR
        x = 0.3 * np.sin(2 * np.pi * (120 + 110 * i) * t) * (1 + np.sin(2 * np.pi * (i + 1) * t))
        x += 0.02 * (i + 1) * rng.normal(size=t.size)
        paths.append(str(root / f"c{i}.wav"))
        sf.write(paths[-1], x.astype(np.float32), SR)
    return paths


def _by_path(encoder, paths, **kw) -> dict[str, np.ndarray]:
    e = embed_files(encoder, paths, progress=False, **kw)
    assert not e.skipped_paths, e.skipped_reasons
    return dict(zip(e.paths, e.embeddings))


@pytest.mark.numerics
@pytest.mark.parametrize("name,preset", ENCODERS, ids=[f"{n}-{p}" for n, p in ENCODERS])
def test_embedding_does_not_depend_on_the_batch(name, preset, clips):
    if name not in list_encoders():
        pytest.skip(f"{name} is not registered")
    torch.manual_seed(0)
    encoder = create(name, preset=preset)
    # the whole 1.5-s clip in one window keeps the base-size ViT cheap on a CPU
    alone = _by_path(encoder, clips[:6], policy="whole", batch_size=1)
    together = _by_path(encoder, clips[:6], policy="whole", batch_size=6)
    mixed = _by_path(encoder, clips[::-1], policy="whole", batch_size=3)  # other neighbours, other splits
    # randomly initialised deep CNNs give features of any scale (1e-11 for EfficientNet): relative to it
    tol = encoder_tol(encoder, *alone.values())
    for p in clips[:6]:
        for other, what in ((together, "batch of 6"), (mixed, "other neighbours")):
            assert_close(other[p], alone[p], tol, f"{name} {preset}: {Path(p).name} in a {what}")
    assert float(np.abs(alone[clips[0]] - alone[clips[1]]).max()) > tol  # different clips: more than rounding


@pytest.mark.numerics
def test_default_policy_embedding_does_not_depend_on_the_batch(clips):
    torch.manual_seed(0)
    encoder = create("opera-gt", preset="tiny")  # the alignment input: one 8.19-s zero-padded window
    alone = _by_path(encoder, clips[:4], batch_size=1)
    mixed = _by_path(encoder, clips[3::-1], batch_size=4)
    for p in clips[:4]:
        assert_close(mixed[p], alone[p], encoder_tol(encoder, *alone.values()), f"{Path(p).name} in a batch of 4")


# ----------------------------------------------------------------------------------------- alignment


def _align(clips: list[str], tmp_path: Path, out: str, seed: int) -> dict:
    manifest = tmp_path / "manifest.csv"
    if not manifest.exists():
        rows = [f"{p},Recording {i}: heart rate {70 + 9 * i} bpm, murmur grade {i % 4}.\n"
                for i, p in enumerate(clips[:4])]
        manifest.write_text("audio_path,Gen_Report\n" + "".join(rows))
    argv = ["align", "--manifest", str(manifest), "--encoder", "opera-gt", "--preset", "tiny", "--epochs", "1",
            "--batch-size", "2", "--seed", str(seed), "--out", str(tmp_path / out)]
    assert main(argv) == 0
    return torch.load(tmp_path / out / "acula_final.pt", map_location="cpu", weights_only=True)


def _weights(ck: dict) -> dict[str, torch.Tensor]:
    return {f"{part}.{k}": v for part in ("audio_model_state_dict", "audio_projection_mlp_state_dict",
                                          "language_projection_mlp_state_dict") for k, v in ck[part].items()}


def test_same_seed_same_alignment_bitwise(clips, tmp_path):
    """Two in-process runs: the second starts from whatever RNG state the first left behind."""
    first = _align(clips, tmp_path, "a", seed=5)
    torch.rand(3)  # disturb the global generator between the runs
    second = _align(clips, tmp_path, "b", seed=5)
    assert first["step"] == second["step"] == 2
    a, b = _weights(first), _weights(second)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
