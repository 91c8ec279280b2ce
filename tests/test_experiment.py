"""`acula experiment`: the generic alignment experiment on the real releases (tiny sizes), and its Yaseen
configuration (the former `real-heart`), through the library and the command line."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from acula.cli import build_parser, main
from acula.datasets import DatasetError
from acula.encoders import create
from acula.experiments import alignment as ex


@pytest.fixture(scope="module")
def inputs(shared_dir: Path) -> tuple[Path, Path]:
    data, weights = shared_dir / "data", shared_dir / "weights" / "yamnet" / "yamnet.tflite"
    if not (data / "sprsound").is_dir() or not (data / "circor").is_dir() or not weights.is_file():
        pytest.skip("SPRSound / CirCor releases or the YAMNet weights missing from the shared folder")
    return data, weights


def tiny(data: Path, out: Path, weights: Path, name: str = "real-data", **overrides) -> ex.ExperimentConfig:
    """Seconds, not minutes: one recording per subject, 1-s windows, one seed, one epoch, a frozen trunk."""
    opts = dict(checkpoint=str(weights), seeds=(0,), probe_seeds=(0,), window_seconds=1.0, crop_seconds=0.975,
                freeze_layers=11, probe_epochs=3, epochs=1, batch_size=16, max_per_subject=1)
    return ex.make_config(name, data, out, "yamnet", **{**opts, **overrides})


@pytest.fixture(scope="module")
def run_result(inputs, shared_dir, tmp_path_factory) -> tuple[dict, Path]:
    data, weights = inputs
    out = tmp_path_factory.mktemp("experiment")
    cfg = tiny(data, out, weights, published_reports={
        "circor": str(shared_dir / "metadata" / "circor" / "training_data_report.csv")})
    return ex.run(cfg), out


def test_results_hold_every_task_and_arm(run_result):
    results, out = run_result
    tasks = [t["task"] for t in results["tasks"]]
    assert tasks == ["sprsound-adventitious", "sprsound-4class", "sprsound-disease", "sprsound-disease@patient",
                     "circor-murmur", "circor-murmur@patient", "circor-outcome", "circor-outcome@patient"]
    for t in results["tasks"]:
        for arm in ("initial", *ex.DEFAULT_ARMS):
            assert math.isfinite(t[arm]["mean"]) and 0 <= t[arm]["mean"] <= 1, (t["task"], arm)
        d = t["aligned_vs_baseline"]
        assert d["mean_diff"] == pytest.approx(t["aligned"]["mean"] - t["baseline"]["mean"])
    assert {(r["task"], r["arm"]) for r in results["zero_shot"]} == {
        (t, a) for t in ("sprsound-adventitious", "sprsound-4class", "sprsound-disease", "circor-murmur",
                         "circor-outcome") for a in ("initial", "aligned", "published")}
    assert (out / "results.png").read_bytes()[:4] == b"\x89PNG" and "| circor-murmur" in (out / "table.md").read_text()
    assert results["corpora"]["circor"]["subjects"] == 262  # one recording per subject: 262 children
    diag = results["diagnostics"]
    assert set(diag["reports_vs_labels"]) == {"sprsound", "circor"} and set(diag["arms"]) == {"initial", *ex.DEFAULT_ARMS}
    for corpus in diag["arms"]["aligned"][0].values():
        assert {"features_vs_reports_train", "features_vs_reports_heldout"} <= set(corpus)
        assert all(-1 <= v <= 1 for v in corpus.values())
    with np.load(out / "features.npz") as z:
        assert z["aligned_seed0"].shape == (len(z["paths"]), 1024) and z["heldout"].any()


def test_no_heldout_subject_is_aligned(run_result):
    _, out = run_result
    held = set()
    for corpus in ("sprsound", "circor"):
        with open(out / f"split-{corpus}.csv", newline="") as f:
            held |= {(corpus, r["subject_id"]) for r in csv.DictReader(f) if r["part"] == "heldout"}
    with open(out / "alignment.csv", newline="") as f:
        aligned = [(r["dataset"], r["subject_id"]) for r in csv.DictReader(f)]
    assert held and aligned and not set(aligned) & held


def test_saved_encoders_embed_as_trained(run_result, inputs):
    """Each arm's encoder is a safetensors file `acula embed --checkpoint` loads; the aligned one differs."""
    _, out = run_result
    _, weights = inputs
    files = sorted(p.name for p in (out / "encoders").glob("*.safetensors"))
    assert files == sorted(["initial.safetensors"] + [f"{a}-seed0.safetensors" for a in ex.DEFAULT_ARMS])
    x = torch.randn(2, 16000)
    emb = {}
    for name in ("initial", "aligned-seed0"):
        enc = create("yamnet", checkpoint=str(out / "encoders" / f"{name}.safetensors")).eval()
        with torch.inference_mode():
            emb[name] = enc.forward_feature(x).numpy()
    reference = create("yamnet", checkpoint=str(weights)).eval()
    with torch.inference_mode():
        np.testing.assert_allclose(emb["initial"], reference.forward_feature(x).numpy(), rtol=1e-5, atol=1e-5)
    assert not np.allclose(emb["initial"], emb["aligned-seed0"])


def test_prepared_folder_trains_without_data_or_teacher(run_result, inputs, shared_dir, tmp_path, monkeypatch):
    """The prepared folder carries inputs, labels and teacher embeddings: a run elsewhere (a GPU machine) needs no
    recordings and no teacher, gives the same numbers, and refuses a folder prepared for other settings."""
    results, out = run_result
    _, weights = inputs
    published = {"circor": str(shared_dir / "metadata" / "circor" / "training_data_report.csv")}
    cfg = tiny(tmp_path / "no-data-here", tmp_path / "o", weights, arms=("baseline",), prepared=out / "prepared",
               published_reports=published)
    monkeypatch.setattr(ex.corpus, "Teacher", lambda *a, **k: pytest.fail("the teacher was loaded"))
    again = ex.run(cfg)
    for a, b in zip(results["tasks"], again["tasks"]):
        assert b["initial"]["per_seed"] == a["initial"]["per_seed"], a["task"]
        assert "aligned" not in b and "baseline" in b
    assert again["complete"] and json_of(out / "results.json")["complete"]
    with pytest.raises(ValueError, match="prepared for other settings.*window_seconds"):
        ex.run(tiny(tmp_path, tmp_path / "o2", weights, prepared=out / "prepared", window_seconds=2.0,
                    published_reports=published))


def json_of(path: Path) -> dict:
    import json

    return json.loads(path.read_text())


def test_frozen_trunk_matches_full_forward(inputs):
    data, weights = inputs
    enc = create("yamnet", checkpoint=str(weights))
    paths = sorted((data / "circor" / "training_data").glob("*.flac"))[:3]
    x = np.stack([ex.clip_input(str(p), enc, 2.0) for p in paths])
    ex.freeze(enc, 11)
    trunk = ex.FrozenTrunk(enc, x, 11)
    with torch.inference_mode():
        full = enc.forward_feature(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(trunk.features(enc), full, rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        enc.backbone[0].conv.bias.add_(1.0)
    with pytest.raises(RuntimeError, match="frozen layer"):
        trunk.features(enc)


def test_yaseen_is_one_configuration_of_it(inputs, shared_dir, tmp_path):
    """The former real-heart experiment: the same code path, from the command line, reruns bit-identically."""
    data, weights = inputs
    if not (data / "heart-yaseen" / "labels.csv").is_file():
        pytest.skip("heart-yaseen missing from the shared folder")
    folder = tmp_path / "yaseen"
    folder.mkdir()
    with open(data / "heart-yaseen" / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    with open(folder / "labels.csv", "w", newline="") as f:  # 10 files per label, pointing at the shared audio
        w = csv.writer(f)
        w.writerow(["path", "label"])
        for label in ("MR", "MS", "MVP", "N"):
            for r in [r for r in rows if r["label"] == label][:10]:
                w.writerow([str(data / "heart-yaseen" / r["path"]), label])
    flags = ["--checkpoint", str(weights), "--seeds", "0", "--probe-seeds", "0", "--window-seconds", "2",
             "--freeze-layers", "11", "--epochs", "1", "--batch-size", "8", "--probe-epochs", "3"]
    assert main(["experiment", "real-heart", "--data", str(folder), "--out", str(tmp_path / "a"), *flags]) == 0
    torch.manual_seed(12345)  # the global RNG state before a run must not matter
    assert main(["experiment", "align", "--config", "yaseen", "--data-root", str(folder), "--out",
                 str(tmp_path / "b"), *flags]) == 0
    a, b = ((tmp_path / d / "results.json").read_text() for d in "ab")
    import json

    ra, rb = json.loads(a), json.loads(b)
    assert [t["task"] for t in ra["tasks"]] == ["yaseen-abnormal", "yaseen-4class"]
    for ta, tb in zip(ra["tasks"], rb["tasks"]):
        for arm in ("initial", "baseline", "aligned", "label_cka"):
            assert ta[arm]["per_seed"] == tb[arm]["per_seed"], (ta["task"], arm)


def test_defaults_per_encoder_and_config(tmp_path):
    cfg = ex.make_config("real-data", tmp_path, tmp_path / "o", "yamnet")
    assert (cfg.window_seconds, cfg.crop_seconds, cfg.freeze_layers, cfg.mam_epochs) == (8.0, 0.975, 8, 0)
    cfg = ex.make_config("yaseen", tmp_path, tmp_path / "o", "opera-gt", preset="tiny")
    assert cfg.window_seconds == 4.064 and cfg.mam_epochs == 8 and cfg.checkpoint is None
    args = build_parser(["experiment"]).parse_args(["experiment", "align", "--data-root", str(tmp_path), "--out",
                                                    str(tmp_path / "o"), "--seeds", "0,1", "--crop-seconds", "0"])
    assert args.seeds == (0, 1) and args.crop_seconds == 0.0 and args.config == "real-data"
    with pytest.raises(ValueError, match="unknown experiment configuration 'lungs'"):
        ex.make_config("lungs", tmp_path, tmp_path)


def test_missing_corpus_is_named(tmp_path):
    cfg = ex.make_config("circor", tmp_path, tmp_path / "o", "yamnet")
    with pytest.raises(DatasetError, match="CirCor not found under"):
        ex.run(cfg)
