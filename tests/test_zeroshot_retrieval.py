"""Zero-shot classification and audio-text retrieval: metrics, calibration, and a short alignment end to end."""

import csv
import json
import math

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from acula.evaluate.retrieval import (average_precision_at_k, chance_recall_at_k, evaluate, ranked_relevance,
                                      recall_at_k, relevance, retrieval_metrics)
from acula.evaluate.zeroshot import (Calibration, Prompts, classify, default_calibration_path, similarity,
                                     zero_shot)
from numerics import LAMBDA, U64, Shape, assert_close, reorder_tol


# ------------------------------------------------------------------------------------------------ metrics
def test_recall_and_map_on_a_hand_made_matrix():
    # query 0: its item ranks 1st; query 1: 2nd; query 2: 3rd
    sim = np.array([[0.9, 0.1, 0.2],
                    [0.8, 0.5, 0.1],
                    [0.7, 0.6, 0.3]])
    rel = np.eye(3, dtype=bool)
    assert recall_at_k(sim, rel, 1) == pytest.approx(1 / 3)
    assert recall_at_k(sim, rel, 2) == pytest.approx(2 / 3)
    assert recall_at_k(sim, rel, 3) == 1.0
    np.testing.assert_allclose(average_precision_at_k(sim, rel, 10), [1.0, 0.5, 1 / 3])
    m = retrieval_metrics(sim, rel)
    assert m["R@1"] == pytest.approx(1 / 3) and m["R@5"] == 1.0 and m["median_rank"] == 2.0
    assert m["mAP@10"] == pytest.approx((1 + 0.5 + 1 / 3) / 3)


def test_ap_with_several_relevant_items_and_the_cutoff():
    # relevant at ranks 1 and 3 -> (1/1 + 2/3) / 2
    sim = np.array([[0.9, 0.8, 0.7, 0.1]])
    rel = np.array([[True, False, True, False]])
    assert average_precision_at_k(sim, rel, 10)[0] == pytest.approx((1 + 2 / 3) / 2)
    # only rank 11 is relevant: outside the top 10, AP@10 = 0 and R@10 = 0
    sim = -np.arange(12, dtype=float)[None]
    rel = np.zeros((1, 12), bool)
    rel[0, 10] = True
    assert average_precision_at_k(sim, rel, 10)[0] == 0.0 and recall_at_k(sim, rel, 10) == 0.0
    # 12 relevant items, perfectly ranked: normalised by min(R, 10), so AP@10 = 1
    assert average_precision_at_k(sim, np.ones((1, 12), bool), 10)[0] == pytest.approx(1.0)


def test_ties_count_against_the_query():
    sim = np.zeros((4, 4))  # a collapsed model: every score equal
    rel = np.eye(4, dtype=bool)
    assert recall_at_k(sim, rel, 1) == 0.0
    assert ranked_relevance(sim, rel)[:, -1].all()
    assert chance_recall_at_k(rel, 1) == pytest.approx(0.25)


def test_identical_reports_are_relevant_to_each_other():
    reports = ["murmur present.", "no murmur.", " murmur present."]
    rel = relevance(reports, reports)
    assert rel[0, 2] and rel[2, 0] and not rel[0, 1]
    # audio 0 prefers the duplicate of its report: still a hit at rank 1
    sim = np.array([[0.5, 0.1, 0.9], [0.1, 0.9, 0.2], [0.9, 0.1, 0.3]])
    assert recall_at_k(sim, rel, 1) == 1.0


def test_chance_recall_matches_the_closed_form():
    rel = np.zeros((1, 10), bool)
    rel[0, 3] = True
    assert chance_recall_at_k(rel, 5) == pytest.approx(0.5)
    rel[0, 4] = True  # two relevant of 10, top 5: 1 - C(8,5)/C(10,5)
    assert chance_recall_at_k(rel, 5) == pytest.approx(1 - 56 / 252)


def test_metric_input_errors_are_explicit():
    with pytest.raises(ValueError, match="same"):
        ranked_relevance(np.zeros((2, 3)), np.eye(2, dtype=bool))
    with pytest.raises(ValueError, match="no relevant"):
        ranked_relevance(np.zeros((2, 2)), np.array([[True, False], [False, False]]))


# ------------------------------------------------------------------------------------------------ calibration
def _rotated_pairs(n, d=16, seed=0):
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    text = rng.normal(size=(n, d)) + 2.0  # a common offset, as projections have
    audio = 3.0 * text @ q + 5.0 + 0.01 * rng.normal(size=(n, d))
    return audio.astype(np.float32), text.astype(np.float32), q


@pytest.mark.numerics
def test_calibrated_retrieval_undoes_a_rotation_that_raw_cosine_cannot():
    audio, text, q = _rotated_pairs(250)
    cal = Calibration.fit(audio[:200], text[:200])  # "alignment pairs": disjoint from the evaluated ones
    # statistics, not rounding: noise 0.01 on audio 3x the text's spread leaves each of the 16 x 16 rotation
    # entries a standard error of 0.01 / 3 / sqrt(200) per direction (sqrt(16) of them), the one scale a
    # relative 0.01 / 3 / sqrt(200 * 16); allow LAMBDA standard errors
    se = 0.01 / 3 / math.sqrt(200)
    assert_close(cal.rotation, q.T, LAMBDA * se * math.sqrt(16), "rotation")
    assert_close(cal.scale * 3, 1.0, LAMBDA * se / math.sqrt(16), "scale x 3")
    assert cal.meta["residual"] < 0.02 < cal.meta["residual_identity"]
    reports = [f"report {i}" for i in range(50)]
    calibrated = evaluate(audio[200:], text[200:], reports, "calibrated", cal)
    raw = evaluate(audio[200:], text[200:], reports, "raw")
    for direction in ("audio_to_text", "text_to_audio"):
        assert calibrated[direction]["R@1"] == 1.0 and calibrated[direction]["mAP@10"] == 1.0
        assert raw[direction]["R@1"] < 0.5


@pytest.mark.numerics
def test_calibration_round_trip_and_checkpoint_guard(tmp_path):
    audio, text, _ = _rotated_pairs(40, d=8)
    cal = Calibration.fit(audio, text, checkpoint_sha256="a" * 64)
    path = cal.save(tmp_path / "cal.safetensors")
    back = Calibration.load(path)
    np.testing.assert_array_equal(back.rotation, cal.rotation)
    assert back.scale == pytest.approx(cal.scale) and back.meta["n_pairs"] == 40
    # cosines of 8-d rows (a dot product and two norms each), evaluated twice; the saved scale cancels in a cosine
    assert_close(similarity(audio, text, "calibrated", back), similarity(audio, text, "calibrated", cal),
                 reorder_tol(1.0, Shape(3, 8)), "similarity after a round trip")
    with pytest.raises(ValueError, match="needs a Calibration"):
        similarity(audio, text, "calibrated")
    with pytest.raises(ValueError, match="at least 2"):
        Calibration.fit(audio[:1], text[:1])
    (tmp_path / "bad.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="cannot read calibration"):
        Calibration.load(tmp_path / "bad.safetensors")
    assert default_calibration_path("runs/x/acula_final.pt").name == "acula_final.calibration.safetensors"


# ------------------------------------------------------------------------------------------------ zero-shot
def test_binary_auroc_ranks_by_the_positive_minus_negative_similarity():
    rng = np.random.default_rng(0)
    sim = rng.uniform(-1, 1, size=(40, 2))
    y = rng.integers(0, 2, 40)
    y[:2] = [0, 1]
    r = classify(sim, y, logit_scale=7.0)
    assert r["auroc"] == pytest.approx(roc_auc_score(y, sim[:, 1] - sim[:, 0]))
    assert r["accuracy"] == pytest.approx(np.mean(sim.argmax(1) == y))
    three = classify(rng.uniform(-1, 1, size=(40, 3)), rng.integers(0, 3, 40))
    assert 0.0 <= three["auroc"] <= 1.0 and 0.0 <= three["balanced_accuracy"] <= 1.0
    with pytest.raises(ValueError, match="two classes"):
        classify(sim, np.zeros(40, int))


def test_zero_shot_reports_every_prompt_set_and_the_ensemble():
    rng = np.random.default_rng(1)
    prompts = rng.normal(size=(3, 2, 8))  # 3 prompt sets x 2 classes
    y = np.repeat([0, 1], 20)
    audio = prompts[0][y] + 0.3 * rng.normal(size=(40, 8))  # audio sits near prompt set 0's class texts
    r = zero_shot(audio, y, prompts, "raw")
    assert len(r["auroc"]["values"]) == 3
    assert r["auroc"]["mean"] == pytest.approx(np.mean(r["auroc"]["values"]))
    assert r["auroc"]["std"] == pytest.approx(np.std(r["auroc"]["values"]))
    assert r["auroc"]["values"][0] == 1.0 and r["auroc"]["std"] > 0  # not only the best set is reported
    assert set(r["ensemble"]) == {"auroc", "accuracy", "balanced_accuracy"}


def test_prompt_files_are_checked():
    p = Prompts.from_dict({"classes": {"0": ["no murmur", "normal"], "1": ["murmur", "a systolic murmur"]}})
    assert p.sets == [["no murmur", "murmur"], ["normal", "a systolic murmur"]]
    np.testing.assert_array_equal(p.class_index(["1.0", "0", "1"]), [1, 0, 1])
    with pytest.raises(ValueError, match=r"row 7: label 'Unknown'"):
        p.class_index(["1", "Unknown"], "m.csv", rows=[6, 7])
    with pytest.raises(ValueError, match="same number of prompts"):
        Prompts.from_dict({"classes": {"0": ["a", "b"], "1": ["c"]}})
    with pytest.raises(ValueError, match="at least 2 classes"):
        Prompts.from_dict({"classes": {"0": ["a"]}})
    with pytest.raises(ValueError, match="no built-in prompts"):
        Prompts.default("outcome")
    assert len(Prompts.default("murmur").sets) >= 3


# ------------------------------------------------------------------------------------------------ end to end
@pytest.fixture(scope="module")
def aligned(tmp_path_factory):
    """A tiny opera-gt aligned for two epochs on the synthetic corpus; test subjects held out."""
    from acula.align.model import AculaModel
    from acula.align.trainer import AlignmentData, TrainConfig, Trainer, seed_everything
    from acula.data import synthetic
    from acula.datasets.manifest import read_manifest, write_manifest
    from acula.demo import split_subjects
    from acula.encoders import create
    from acula.extract import read_clip
    from acula.text.cache import embed_texts
    from acula.text.reports import report_for
    from acula.text.teacher import Teacher

    root = tmp_path_factory.mktemp("aligned")
    rows = read_manifest(synthetic.build(root / "corpus", n_heart=8, n_lung=0, n_cough=0, seed=0, progress=False))
    for r in rows:
        r["Gen_Report"] = report_for(r["dataset"], r, seed=0)
    test = split_subjects(rows, 0.35, seed=0)
    train = [r for r in rows if r["subject_id"] not in test]
    held = [r for r in rows if r["subject_id"] in test]
    assert {r["murmur"] for r in held} == {"0", "1"}
    write_manifest(root / "align.csv", train)
    write_manifest(root / "test.csv", held)
    teacher = Teacher("minilm", progress=False)
    text = embed_texts(teacher, [r["Gen_Report"] for r in train], root / "text_cache")
    seed_everything(0)
    enc = create("opera-gt", preset="tiny")
    x = np.stack([read_clip(r["audio_path"], enc, "acula")[0].numpy() for r in train])
    model = AculaModel(enc, text_dim=teacher.hidden_size, hidden_dim=64, proj_dim=32, dropout=0.1)
    cfg = TrainConfig(epochs=2, batch_size=len(train) // 2, lr=5e-4, lambda_mam=0.0, seed=0)
    Trainer(model, AlignmentData(x, text), cfg, root / "run",
            run_config={"teacher": teacher.key, "manifest": str(root / "align.csv")}).fit(resume=False)
    return root


def _parser():
    from acula.cli import build_parser

    return build_parser()


def _run(argv):
    args = _parser().parse_args(argv)
    assert args.func(args) == 0


def test_zeroshot_and_retrieval_after_a_short_alignment(aligned, tmp_path):
    ck = aligned / "run" / "acula_final.pt"
    common = ["--checkpoint", str(ck), "--manifest", str(aligned / "test.csv"), "--cache-dir",
              str(aligned / "text_cache"), "--device", "cpu", "--similarity", "both"]
    _run(["calibrate", "--checkpoint", str(ck), "--manifest", str(aligned / "align.csv"), "--device", "cpu",
          "--cache-dir", str(aligned / "text_cache")])
    cal = Calibration.load(default_calibration_path(ck))
    assert cal.meta["n_pairs"] == len(list(csv.DictReader(open(aligned / "align.csv"))))
    assert cal.rotation.shape == (32, 32) and np.isfinite(cal.rotation).all()
    # the Procrustes map can only reduce the error of the best scaled identity
    fit = Shape(3, cal.meta["n_pairs"] * 32)  # float64 Procrustes: the cross-covariance, the SVD's sums, the residual
    assert cal.meta["residual"] <= cal.meta["residual_identity"] + reorder_tol(cal.meta["residual_identity"], fit,
                                                                             u=U64)

    prompts = tmp_path / "prompts.json"
    prompts.write_text(json.dumps({"classes": {"0": ["Murmur absent.", "Normal heart sounds.", "No murmur."],
                                               "1": ["A murmur is present.", "A systolic murmur.", "Murmur."]}}))
    _run(["zeroshot", *common, "--label-column", "murmur", "--prompts", str(prompts), "--out", str(tmp_path / "zs")])
    zs = json.loads((tmp_path / "zs" / "zeroshot.json").read_text())
    assert zs["n"] == sum(zs["class_counts"].values()) > 0 and zs["n_prompt_sets"] == 3
    assert zs["overlap_with_calibration"] == 0  # held-out subjects never entered calibration
    for mode in ("calibrated", "raw"):
        r = zs["results"][mode]
        assert len(r["auroc"]["values"]) == 3
        for metric in ("auroc", "accuracy", "balanced_accuracy"):
            assert 0.0 <= r[metric]["mean"] <= 1.0 and r[metric]["std"] >= 0.0
    with open(tmp_path / "zs" / "zeroshot.csv") as f:
        assert len(list(csv.DictReader(f))) == 6

    _run(["retrieve", *common, "--out", str(tmp_path / "ret")])
    ret = json.loads((tmp_path / "ret" / "retrieval.json").read_text())
    assert ret["n"] == zs["n"]
    for mode in ("calibrated", "raw"):
        for direction in ("audio_to_text", "text_to_audio"):
            m = ret["results"][mode][direction]
            assert 0.0 <= m["R@1"] <= m["R@5"] <= m["R@10"] <= 1.0
            assert 0.0 <= m["mAP@10"] <= 1.0 and 1 <= m["median_rank"] <= m["n_candidates"] == ret["n"]
            assert m["chance"]["R@1"] == pytest.approx(1 / ret["n"])  # the synthetic reports are all distinct


def test_checkpoint_without_heads_or_calibration_is_refused(aligned, tmp_path):
    from acula.encoders.checkpoint import CheckpointError
    from acula.evaluate.zeroshot import load_aligned, run_zeroshot

    ck = torch.load(aligned / "run" / "acula_final.pt", map_location="cpu", weights_only=True)
    del ck["language_projection_mlp_state_dict"]
    torch.save(ck, tmp_path / "no_heads.pt")
    with pytest.raises(CheckpointError, match="language projection head"):
        load_aligned(tmp_path / "no_heads.pt")
    # a copy of the checkpoint with no calibration beside it and none given
    fresh = tmp_path / "copy" / "acula_final.pt"
    fresh.parent.mkdir()
    fresh.write_bytes((aligned / "run" / "acula_final.pt").read_bytes())
    with pytest.raises(ValueError, match="no calibration"):
        run_zeroshot(fresh, aligned / "test.csv", "murmur", tmp_path / "out", cache_dir=aligned / "text_cache",
                     log=lambda s: None)
