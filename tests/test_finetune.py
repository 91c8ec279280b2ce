"""End-to-end fine-tuning: recipe pieces on a toy encoder, and a custom CSV task on real heart sounds."""

import csv

import numpy as np
import pytest
import torch

from acula.evaluate.bench import RESULT_COLUMNS, SEED_COLUMNS
from acula.evaluate.finetune import (EarlyStopping, FinetuneConfig, clip_features, finetune_split, run_finetune)
from acula.evaluate.tasks import csv_task
from toy_encoder import ToyEncoder


def test_clip_feature_is_the_mean_of_its_window_features():
    torch.manual_seed(0)
    enc = ToyEncoder()
    clips = [torch.randn(3, 16, 8), torch.randn(1, 16, 8), torch.randn(2, 24, 8)]  # last: another length
    got = clip_features(enc, clips, "cpu")
    want = torch.stack([enc.forward_feature(c).mean(0) for c in clips])
    torch.testing.assert_close(got, want)


def test_early_stopping_counts_epochs_without_improvement():
    s = EarlyStopping(patience=2, higher_is_better=True)
    assert s.update(0.6) and not s.update(0.6) and not s.stop  # equal is no improvement
    assert not s.update(0.5) and s.stop and s.best == 0.6
    m = EarlyStopping(patience=1, higher_is_better=False)  # MAE: lower is better
    assert m.update(3.0) and m.update(2.0) and not m.update(2.5) and m.stop


def _toy_task(n=48, seed=0):
    rng = np.random.default_rng(seed)
    y = np.repeat([0, 1], n // 2)
    inputs = [torch.from_numpy((rng.normal(size=(int(rng.integers(1, 3)), 16, 8)) + 1.5 * yi).astype(np.float32))
              for yi in y]
    idx = rng.permutation(n)
    return inputs, y, idx[: n // 2], idx[n // 2: 3 * n // 4], idx[3 * n // 4:]


def test_encoder_learns_at_the_scaled_rate_and_the_original_is_untouched():
    inputs, y, tr, va, te = _toy_task()
    torch.manual_seed(0)
    enc = ToyEncoder()
    before = {k: v.clone() for k, v in enc.state_dict().items()}
    cfg = FinetuneConfig(epochs=3, patience=10, lr=1e-2)
    r = finetune_split(enc, inputs, y, tr, va, te, "classification", 2, cfg, seed=0, batch_size=8)
    assert 0.5 < r["test"] <= 1.0 and r["epochs"] == 3
    assert any(not torch.equal(v, before[k]) for k, v in r["model"].encoder.state_dict().items())
    for k, v in enc.state_dict().items():
        assert torch.equal(v, before[k])  # every seed starts from the same weights
    frozen = finetune_split(enc, inputs, y, tr, va, te, "classification", 2,
                            FinetuneConfig(epochs=2, lr=1e-2, encoder_lr_scale=0.0), seed=0, batch_size=8)
    for k, v in frozen["model"].encoder.state_dict().items():
        assert torch.equal(v, before[k])  # scale 0: only the head moves


def test_regression_predicts_in_target_units():
    inputs, y, tr, va, te = _toy_task()
    target = 60.0 + 10.0 * y  # e.g. heart rate
    r = finetune_split(ToyEncoder(), inputs, target, tr, va, te, "regression", 1,
                       FinetuneConfig(epochs=4, lr=3e-2), seed=1, batch_size=8)
    assert 0.0 <= r["test"] < 10.0  # MAE below what predicting the wrong class mean everywhere would give


@pytest.fixture
def yaseen_task(shared_dir, tmp_path):
    """N vs valve disease on 60 real recordings (8 kHz, 1-4 s), split by file."""
    root = shared_dir / "data" / "heart-yaseen"
    with open(root / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    rng = np.random.default_rng(0)
    picked = []
    for label, n in (("N", 30), ("MR", 10), ("MS", 10), ("MVP", 10)):
        files = [r["path"] for r in rows if r["label"] == label]
        picked += [(p, "normal" if label == "N" else "valve") for p in rng.choice(files, n, replace=False)]
    split = {}
    for cls in ("normal", "valve"):
        paths = [p for p, c in picked if c == cls]
        for i, p in enumerate(paths):
            split[p] = "train" if i < 18 else "val" if i < 24 else "test"
    path = tmp_path / "yaseen.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["audio_path", "label", "split"])
        w.writerows([str(root / p), c, split[p]] for p, c in picked)
    return path


def test_finetune_custom_csv_task_writes_bench_results(yaseen_task, tmp_path):
    from acula.encoders import create

    torch.manual_seed(0)
    enc = create("opera-gt", preset="tiny")
    missing = csv_task(tmp_path / "missing.csv")
    cfg = FinetuneConfig(epochs=2, batch_size=18)
    rows = run_finetune(enc, [csv_task(yaseen_task, task_id="yaseen"), missing], tmp_path / "ft", seeds=(0, 1),
                        cfg=cfg, log=lambda s: None)
    ok, bad = rows
    assert ok["status"] == "ok" and ok["metric"] == "AUROC" and ok["n_seeds"] == 2
    assert (ok["n_train"], ok["n_val"], ok["n_test"]) == (36, 12, 12)
    assert 0.0 <= float(ok["mean"]) <= 1.0 and float(ok["std"]) >= 0.0
    assert bad["status"] == "error" and "not found" in bad["error"]  # one bad task does not stop the others

    with open(tmp_path / "ft" / "results.csv", newline="") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == RESULT_COLUMNS  # the same file acula bench writes
        assert [r["task"] for r in reader] == ["yaseen", "missing"]
    with open(tmp_path / "ft" / "results_seeds.csv", newline="") as f:
        reader = csv.DictReader(f)
        seeds = list(reader)
        assert reader.fieldnames == SEED_COLUMNS and [r["seed"] for r in seeds] == ["0", "1"]
    # every value is printed to 4 decimals (<= 5e-5 off): the mean of the printed seeds and the printed mean
    assert np.mean([float(r["value"]) for r in seeds]) == pytest.approx(float(ok["mean"]), abs=1e-4)
    with open(tmp_path / "ft" / "finetune_log.csv", newline="") as f:
        log = list(csv.DictReader(f))
    assert [(r["seed"], r["epoch"]) for r in log] == [("0", "1"), ("0", "2"), ("1", "1"), ("1", "2")]
    assert float(log[0]["lr_encoder"]) == pytest.approx(0.1 * float(log[0]["lr_head"]))
    assert float(log[1]["lr_head"]) == pytest.approx(0.99 * float(log[0]["lr_head"]))


def test_bad_recipe_settings_are_refused():
    with pytest.raises(ValueError, match="epochs"):
        FinetuneConfig(epochs=0)
    with pytest.raises(ValueError, match="decay"):
        FinetuneConfig(decay=1.5)
