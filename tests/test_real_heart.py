"""`acula experiment real-heart` end to end on 40 real heart-valve files with the real YAMNet weights."""

from __future__ import annotations

import argparse
import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from acula.align.trainer import TrainConfig
from acula.experiments import register_cli
from acula.experiments import real_heart as rh

PER_LABEL = 10


@pytest.fixture(scope="module")
def yaseen(shared_dir: Path, tmp_path_factory) -> Path:
    """A 40-file copy of labels.csv (10 per label) pointing at the shared audio."""
    src = shared_dir / "data" / "heart-yaseen"
    weights = shared_dir / "weights" / "yamnet" / "yamnet.tflite"
    if not (src / "labels.csv").is_file() or not weights.is_file():
        pytest.skip("heart-yaseen data or YAMNet weights missing from the shared folder")
    with open(src / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    folder = tmp_path_factory.mktemp("yaseen40")
    with open(folder / "labels.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label"])
        for label in rh.LABELS:
            for r in [r for r in rows if r["label"] == label][:PER_LABEL]:
                w.writerow([str(src / r["path"]), label])
    return folder


def tiny_config(data: Path, out: Path, shared_dir: Path, **overrides) -> rh.RealHeartConfig:
    return rh.RealHeartConfig(
        data=data, out=out, encoder="yamnet", checkpoint=str(shared_dir / "weights" / "yamnet" / "yamnet.tflite"),
        seeds=(0,), probe_seeds=(0,), window_seconds=2.0, crop_seconds=0.975, freeze_layers=11, probe_epochs=3,
        train=TrainConfig(epochs=1, batch_size=8, lr=3e-4, warmup_steps=1), **overrides,
    )


@pytest.fixture(scope="module")
def run_result(yaseen: Path, shared_dir: Path, tmp_path_factory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("real-heart")
    return rh.run(tiny_config(yaseen, out, shared_dir)), out


def test_results_schema_and_numbers(run_result):
    results, out = run_result
    assert [(t["name"], t["metric"]) for t in results["tasks"]] == [(n, m) for n, m, _ in rh.TASKS]
    assert [t["name"] for t in results["zero_shot"]["tasks"]] == [n for n, *_ in rh.ZERO_SHOT_TASKS]
    for block in (results["tasks"], results["zero_shot"]["tasks"]):
        for t in block:
            assert t["higher_is_better"] is True
            for arm in rh.ARMS:
                assert set(t[arm]) >= {"mean", "std"}
                assert math.isfinite(t[arm]["mean"]) and 0.0 <= t[arm]["mean"] <= 1.0
                assert math.isfinite(t[arm]["std"])
    assert "aligned_uncalibrated" in results["zero_shot"]["tasks"][0]
    assert results["split"]["n_train"] + results["split"]["n_test"] == results["split"]["n_files"] == 4 * PER_LABEL
    assert results["split"]["n_test"] == 12 and all(c["test"] == 3 for c in results["split"]["per_label"].values())
    assert results["wall_seconds"] > 0 and results["config"]["freeze_layers"] == 11
    # the MAM-only arm never trains the alignment term; the aligned arm does
    assert results["final_loss"]["baseline-seed0"]["align"] == 0.0
    assert results["final_loss"]["aligned-seed0"]["align"] > 0.0
    assert results["final_loss"][f"{rh.LABEL_CONTROL}-seed0"]["align"] > 0.0
    assert all(math.isfinite(t[rh.LABEL_CONTROL]["mean"]) for t in results["tasks"])
    assert json.loads((out / "results.json").read_text())["tasks"] == results["tasks"]
    assert (out / "results.png").read_bytes()[:4] == b"\x89PNG"
    assert not list(out.glob("runs/*/*.pt")), "checkpoints should be removed unless --keep-checkpoints"
    with np.load(out / "features.npz") as z:
        assert {"initial_seed0", "baseline_seed0", "aligned_seed0", f"{rh.LABEL_CONTROL}_seed0"} <= set(z.files)
        assert z["aligned_seed0"].shape == (4 * PER_LABEL, 1024) and np.isfinite(z["aligned_seed0"]).all()
        assert not set(z["train"]) & set(z["test"])


def test_no_test_file_in_alignment(run_result):
    _, out = run_result
    with open(out / "split.csv", newline="") as f:
        split = list(csv.DictReader(f))
    test_files = {str(Path(r["path"]).resolve()) for r in split if r["part"] == "test"}
    with open(out / "alignment-seed0.csv", newline="") as f:
        aligned_on = [r for r in csv.DictReader(f)]
    assert len(test_files) == 12 and len(aligned_on) == 28
    assert not {r["audio_path"] for r in aligned_on} & test_files
    assert all(r["Gen_Report"].strip() for r in aligned_on)


def test_rerun_gives_the_same_numbers(run_result, yaseen, shared_dir, tmp_path):
    """Everything random (MAM head, projection heads, crops, masks, probes) is seeded."""
    first, _ = run_result
    torch.manual_seed(12345)  # the global state before a run must not matter
    again = rh.run(tiny_config(yaseen, tmp_path, shared_dir, label_control=False))
    for a, b in zip(first["tasks"], again["tasks"]):
        for arm in rh.ARMS:
            assert a[arm]["per_seed"] == b[arm]["per_seed"], (a["name"], arm)
    assert first["final_loss"]["aligned-seed0"] == again["final_loss"]["aligned-seed0"]


def test_frozen_trunk_matches_full_forward(shared_dir, yaseen):
    enc = rh.make_encoder("yamnet", str(shared_dir / "weights" / "yamnet" / "yamnet.tflite"), None)
    rows = rh.read_labels(yaseen)[:3]
    x = np.stack([rh.clip_input(r["path"], enc, 2.0) for r in rows])
    rh.freeze(enc, 11)
    trunk = rh.FrozenTrunk(enc, x, 11)
    with torch.inference_mode():
        full = enc.forward_feature(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(trunk.features(enc), full, rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        enc.backbone[0].conv.bias.add_(1.0)
    with pytest.raises(RuntimeError, match="frozen layer"):
        trunk.features(enc)


def test_reports_state_textbook_features_and_vary_by_seed():
    for label in rh.LABELS:
        texts = {rh.report(label, f"{label}/file{i}.wav", seed) for i in range(20) for seed in range(3)}
        assert len(texts) > 3
        for t in texts:
            assert any(f in t for f in rh.FEATURES[label])
            assert ("typically" in t) or ("textbook" in t) or ("classically" in t) or ("expected" in t)
    assert rh.report("MR", "a.wav", 0) == rh.report("MR", "a.wav", 0)


def test_zero_shot_recovers_a_rotation():
    """Audio = rotated text of its class: Procrustes finds the rotation, plain cosine does not."""
    rng = np.random.default_rng(0)
    labels = np.array(list(rh.LABELS) * 20)
    centers = rng.normal(size=(4, 8))
    idx = np.searchsorted(np.array(rh.LABELS), labels)
    text = centers[idx] + 0.1 * rng.normal(size=(len(labels), 8))
    rot, _ = np.linalg.qr(rng.normal(size=(8, 8)))
    audio = text @ rot.T
    prompts = [centers + 0.05 * rng.normal(size=centers.shape) for _ in range(3)]
    cal = rh.zero_shot(audio[:60], text[:60], audio[60:], prompts, labels[60:])
    raw = rh.zero_shot(audio[:60], text[:60], audio[60:], prompts, labels[60:], mode="raw")
    assert cal["diagnosis_4class"]["mean"] > 0.95 and cal["normal_vs_abnormal"]["mean"] > 0.95
    assert cal["accuracy_4class"]["mean"] > 0.9 > raw["accuracy_4class"]["mean"]
    assert len(cal["diagnosis_4class"]["values"]) == 3


def test_split_is_stratified_and_disjoint():
    labels = [lab for lab in rh.LABELS for _ in range(50)]
    train, test = rh.split_files(labels, 0.3, seed=0)
    assert not set(train) & set(test) and len(train) + len(test) == 200
    assert all(sum(labels[i] == lab for i in test) == 15 for lab in rh.LABELS)


def test_cli_defaults_per_encoder(tmp_path):
    parser = argparse.ArgumentParser()
    register_cli(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["experiment", "real-heart", "--data", str(tmp_path), "--out", str(tmp_path / "o"),
                              "--checkpoint", "w.tflite", "--seeds", "0,1"])
    cfg = rh.config_from_args(args)
    assert cfg.encoder == "yamnet" and cfg.seeds == (0, 1) and cfg.crop_seconds == 0.975 and cfg.probe_lr == 1e-2
    args = parser.parse_args(["experiment", "real-heart", "--data", str(tmp_path), "--out", str(tmp_path / "o"),
                              "--encoder", "opera-gt", "--preset", "tiny", "--crop-seconds", "0"])
    cfg = rh.config_from_args(args)
    assert cfg.checkpoint is None and cfg.freeze_layers == 0 and cfg.crop_seconds is None


def test_bad_labels_are_named(tmp_path):
    (tmp_path / "labels.csv").write_text("path,label\nmissing.wav,MR\n")
    with pytest.raises(FileNotFoundError, match="row 2"):
        rh.read_labels(tmp_path)
    (tmp_path / "labels.csv").write_text("path,label\nmissing.wav,AS\n")
    with pytest.raises(ValueError, match="row 2: label 'AS'"):
        rh.read_labels(tmp_path)
