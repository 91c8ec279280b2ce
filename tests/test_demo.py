"""A tiny end-to-end AcuLa run: corpus -> reports -> teacher cache -> MAM vs MAM+CKA -> probes."""

import json

import numpy as np

from acula.datasets.manifest import read_manifest
from acula.demo import TASKS, DemoConfig, run, table


def test_tiny_end_to_end(tmp_path):
    cfg = DemoConfig(out=tmp_path / "demo", n_heart=24, n_lung=24, n_cough=4, seeds=(0,), probe_seeds=(0,),
                     pretrain_epochs=1)
    cfg.train.epochs = 1
    cfg.train.batch_size = 16
    res = run(cfg)
    saved = json.loads((tmp_path / "demo" / "results.json").read_text())
    assert [t["name"] for t in saved["tasks"]] == [t[0] for t in TASKS]
    for t in saved["tasks"]:
        for arm in ("baseline", "aligned", "initial"):
            assert np.isfinite(t[arm]["mean"]) and np.isfinite(t[arm]["std"])
        assert t["higher_is_better"] == (t["metric"] == "AUROC")
        if t["metric"] == "AUROC":
            assert t["chance"] == 0.5
    # the mean predictor's MAE, recomputed from the manifest's test subjects
    rr = next(t for t in saved["tasks"] if t["name"] == "respiratory_rate")
    rows = [r for r in read_manifest(tmp_path / "demo" / "corpus" / "manifest.csv") if r["modality"] == "lung"]
    train_ids = {r["subject_id"] for r in read_manifest(tmp_path / "demo" / "alignment_manifest.csv")}
    y_tr = [float(r["respiratory_rate"]) for r in rows if r["subject_id"] in train_ids]
    y_te = np.array([float(r["respiratory_rate"]) for r in rows if r["subject_id"] not in train_ids])
    assert abs(rr["chance"] - np.abs(y_te - np.mean(y_tr)).mean()) < 1e-9
    assert "predicting the training mean gives MAE" in table(res)
    assert (tmp_path / "demo" / "results.png").stat().st_size > 5000
    assert "aligned better on" in table(res)
    # alignment corpus holds no test subject, and both arms trained the same number of steps
    align = {r["subject_id"] for r in read_manifest(tmp_path / "demo" / "alignment_manifest.csv")}
    manifest = read_manifest(tmp_path / "demo" / "corpus" / "manifest.csv")
    assert align and len(align) < len({r["subject_id"] for r in manifest})
    logs = [(tmp_path / "demo" / "runs" / f"{a}-seed0" / "train_log.csv").read_text().splitlines() for a in
            ("baseline", "aligned")]
    assert (tmp_path / "demo" / "runs" / "pretrain" / "acula_final.pt").exists()
    assert len(logs[0]) == len(logs[1]) > 1


def test_same_seed_same_demo_results(tmp_path):
    def once(d):
        cfg = DemoConfig(out=d, n_heart=24, n_lung=24, n_cough=4, seeds=(0,), probe_seeds=(0,), pretrain_epochs=1)
        cfg.train.epochs = 1
        cfg.train.batch_size = 16
        res = run(cfg)
        return [(t["name"], t["baseline"]["mean"], t["aligned"]["mean"], t["initial"]["mean"]) for t in res["tasks"]]

    assert once(tmp_path / "a") == once(tmp_path / "b")
