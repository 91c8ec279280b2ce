"""`acula bench`: task loaders on miniature copies of the real layouts, the whole benchmark, custom CSV
tasks, bad input, the feature cache and `bench compare`."""

from __future__ import annotations

import csv
import io
import shutil
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.model_selection import train_test_split

import miniature
from numerics import assert_close, encoder_tol
from acula.cli import main as cli_main
from acula.encoders import create
from acula.evaluate import bench
from acula.evaluate.tasks import TaskError, get_task, list_tasks, resolve_tasks
from acula.evaluate.tasks import opera
from acula.evaluate.tasks.base import InputPolicy, load_name_list, read_xlsx_rows

SPLIT_TASKS = [t.id for t in list_tasks() if t.kind == "classification"]
FOLD_TASKS = [t.id for t in list_tasks() if t.kind == "regression"]


@pytest.fixture(scope="module")
def meta(shared_dir) -> Path:
    return shared_dir / "metadata"


@pytest.fixture(scope="module")
def mini(tmp_path_factory, meta) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("data")
    return root, miniature.build_all(root, meta)


@pytest.fixture(scope="module")
def encoder():
    torch.manual_seed(0)
    return create("opera-gt", preset="tiny")


@pytest.fixture(scope="module")
def full_run(mini, encoder, tmp_path_factory) -> Path:
    """One `acula bench` over every registered task (1 probe epoch, 2 seeds)."""
    root, _ = mini
    out = tmp_path_factory.mktemp("bench")
    with redirect_stdout(io.StringIO()):
        code = cli_main(["bench", "--encoder", "opera-gt", "--preset", "tiny", "--tasks", "all", "--data-root",
                         str(root), "--out", str(out), "--seeds", "2", "--epochs", "1", "--no-progress"])
    assert code == 0
    return out


def read_rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# ---------------------------------------------------------------------------------------------- registry


def test_registry_has_the_protocol_tasks_and_defaults():
    ids = [t.id for t in list_tasks()]
    assert ids == ["T1", "T2", "T5", "T6", "T7", "T8", "T9", "T10", "T11", *[f"T{i}" for i in range(13, 20)],
                   "circor-murmur", "circor-outcome", "sprsound-adventitious", "sprsound-4class", "sprsound-disease",
                   "yaseen-abnormal", "yaseen-4class", "zchsound"]
    assert resolve_tasks("t7,icbhi-copd,T1") == [get_task("T7"), get_task("T1")]
    with pytest.raises(KeyError, match="unknown task 'T3'"):
        resolve_tasks("T3")
    # SPEC §5.1-5.3 hyper-parameters are the defaults; --epochs only overrides when given
    opts, _ = bench.probe_options(get_task("T10"), "linear", None)
    assert (opts["epochs"], opts["batch_size"], opts["l2"], opts["head"]) == (50, 32, 1e-5, "linear")
    opts, _ = bench.probe_options(get_task("T13"), "mlp", None)
    assert (opts["epochs"], opts["batch_size"], opts["l2"], opts["task"], opts["head"]) == (64, 64, 1e-1, "regression", "mlp")
    assert bench.probe_options(get_task("T5"), "mlp", 3)[0]["head"] == "mlp"  # --head is never ignored
    assert get_task("T11").input_policy("opera-gt") == InputPolicy("windows", 8.18)
    assert get_task("T13").input_policy("opera-ct") == InputPolicy("whole", 20, "zero")
    assert get_task("T19").input_policy("opera-ce") == InputPolicy("whole", 1)
    assert get_task("T8").input_policy("yamnet") is None  # non-OPERA encoders keep their own policy
    args = _parser().parse_args(["bench", "--tasks", "T1"])
    assert args.seeds == (0, 1, 2, 3, 4) and args.head == "linear" and args.epochs is None


def _parser():
    from acula.cli import build_parser

    return build_parser()


# ---------------------------------------------------------------------------------------------- loaders


@pytest.mark.parametrize("task_id", SPLIT_TASKS)
def test_split_tasks_are_subject_disjoint_with_both_classes(mini, task_id):
    data = get_task(task_id).load(mini[0])
    parts = {p: set(data.subjects[data.part(p)]) for p in ("train", "val", "test")}
    assert not parts["train"] & parts["test"] and not parts["train"] & parts["val"] and not parts["val"] & parts["test"]
    assert sorted(set(data.split)) == ["test", "train", "val"]
    for p in ("train", "val", "test"):
        assert len(set(data.labels[data.part(p)])) >= 2
    assert all(Path(p).is_file() for p in data.paths)
    assert data.labels.dtype.kind == "i" and data.labels.max() < len(data.classes)


@pytest.mark.parametrize("task_id", FOLD_TASKS)
def test_fold_tasks_hold_out_each_subject_exactly_once(mini, task_id):
    data = get_task(task_id).load(mini[0])
    held = np.concatenate(data.folds)
    assert sorted(held.tolist()) == list(range(len(data)))  # every recording held out exactly once
    for fold in data.folds:
        assert len(set(data.subjects[fold])) == 1  # one subject per fold ...
    assert len(data.folds) == len(set(data.subjects))  # ... and every subject has its fold
    assert data.labels.dtype.kind == "f"


def test_icbhi_official_split_copd_vs_healthy(mini):
    root, info = mini
    data = get_task("T7").load(root)
    chosen = info["icbhi"]["chosen"]
    by_name = {Path(p).stem: i for i, p in enumerate(data.paths)}
    for rec, part, diag in chosen:
        if diag == "URTI":
            assert rec not in by_name  # other diagnoses are dropped
        elif rec.startswith("156_") and part == "train":
            assert rec not in by_name  # patient 156 is on both sides of the official list
        else:
            i = by_name[rec]
            assert data.labels[i] == {"Healthy": 0, "COPD": 1}[diag]
            assert (data.split[i] == "test") == (part == "test")  # official test set kept as is
    assert any("156" in n for n in data.notes)


def test_kauh_labels_subjects_and_filter_variants(mini):
    root, info = mini
    data = get_task("T10").load(root)
    names = [Path(p).name for p in data.paths]
    assert not set(info["kauh"]["dropped"]) & set(names)  # heart failure; lower-case 'copd' as published
    assert all(opera.kauh_label(n) == y for n, y in zip(names, data.labels))
    variant = info["kauh"]["variant"]
    sid = variant.split("_")[0][2:]
    assert len(set(data.split[data.subjects == sid])) == 1 and (data.subjects == sid).sum() == 2


def test_kauh_shipped_split_is_used_with_its_validation_part(mini, tmp_path):
    shutil.copytree(mini[0] / "KAUH", tmp_path / "KAUH")
    names = sorted(p.name for p in (tmp_path / "KAUH" / "AudioFiles").glob("*.wav") if opera.kauh_label(p.name) is not None)
    subjects = sorted({n.split("_")[0][2:] for n in names})
    part_of = {s: ("test" if i % 5 == 0 else "val" if i % 5 == 1 else "train") for i, s in enumerate(subjects)}
    feature = tmp_path / "feature" / "kauh_eval"  # OPERA's folder beside datasets/
    feature.mkdir(parents=True)
    np.save(feature / "sound_dir_loc_subset.npy", np.array([f"datasets/KAUH/AudioFiles/{n}" for n in names]))
    np.save(feature / "train_test_split.npy", np.array([part_of[n.split("_")[0][2:]] for n in names]))
    data = opera.kauh(tmp_path)
    assert [part_of[s] for s in data.subjects] == data.split.tolist()
    assert not any("rebuilt" in n for n in data.notes)


def test_copd_tr_patient_split_reproduces_opera(mini):
    root, info = mini
    data = get_task("T11").load(root)
    labels = {r["Patient ID"]: int(r["Diagnosis"][-1]) for r in miniature.read_csv(root / "copd" / "Labels.csv")}
    ids = list(labels)
    rest, test = train_test_split(ids, [labels[i] for i in ids], test_size=0.2, random_state=1337,
                                  stratify=[labels[i] for i in ids])[:2]
    assert set(data.subjects[data.part("test")]) == set(test)
    assert sorted(set(data.labels.tolist())) == [0, 1, 2, 3, 4] and data.classes == [f"COPD{i}" for i in range(5)]


def test_coughvid_lists_truncated_names_and_recipe(mini, meta, tmp_path):
    root, info = mini
    data = get_task("T5").load(root)
    parts = info["coughvid"]["parts"]
    status = {r["uuid"]: r["status"] for r in info["coughvid"]["rows"]}
    assert set(data.subjects) == {u for u, s in status.items() if s != "symptomatic"}
    for u, p in zip(data.subjects, data.split):
        assert u in parts[p]
    trunc = info["coughvid"]["truncated"]
    assert Path(data.paths[list(data.subjects).index(trunc)]).name == f"{trunc[:-1]}.wav"
    # without the shipped uuid lists the published recipe rebuilds a partition (no file in two parts)
    miniature.build_coughvid(tmp_path, meta, with_lists=False)
    rebuilt = opera.coughvid("sex")(tmp_path)
    assert len(rebuilt) == 20 and set(rebuilt.split) <= {"train", "val", "test"}
    assert any("coughvid_split.py" in n for n in rebuilt.notes)


def test_coviduk_lists_and_participant_fallback(mini):
    root, info = mini
    ex, co = get_task("T1").load(root), get_task("T2").load(root)
    lists = info["coviduk"]["exhalation_lists"]
    for p in ("train", "val", "test"):
        assert sorted(Path(x).name for x in np.array(ex.paths)[ex.part(p)]) == sorted(lists[p])
    assert "P9999" not in set(ex.subjects)  # untested participant
    assert any("train_test_splits.csv" in n for n in co.notes)
    assert all(info["coviduk"]["splits"][s] == p for s, p in zip(co.subjects, co.split))


def test_coswara_google_split_and_exclusions(mini):
    root, info = mini
    c = info["coswara"]
    smoker, sex = get_task("T8").load(root), get_task("T9").load(root)
    assert set(smoker.subjects[smoker.part("test")]) == set(c["smoker_test"])
    assert set(smoker.subjects) == set(c["ids"])  # bad uuid, bad-quality cough and missing cough-heavy left out
    assert all(smoker.labels[i] == (c["smoker"][u] == "yes") for i, u in enumerate(smoker.subjects))
    assert all(sex.labels[i] == (c["gender"][u] == "female") for i, u in enumerate(sex.subjects))
    assert any("non-google" in n for n in sex.notes)


def test_mmlung_xlsx_targets_and_nosemic_rates(mini):
    root, info = mini
    for task_id, col in (("T13", 0), ("T14", 1), ("T15", 2)):
        data = get_task(task_id).load(root)
        assert [float(y) for y in data.labels] == [info["mmlung"]["targets"][s][col] for s in data.subjects]
    assert "3" not in set(get_task("T16").load(root).subjects)  # no vowel recording
    rows = read_xlsx_rows(root / "mmlung" / "All_path.xlsx")
    assert rows[0]["Deep_Breath_file"].startswith("./Trimmed Data from phone/")
    nose = get_task("T19").load(root)
    assert {Path(p).name: (s, y) for p, s, y in zip(nose.paths, nose.subjects, nose.labels)} == info["nosemic"]["rates"]


def test_cardiac_tasks(mini):
    root, info = mini
    circor = get_task("circor-murmur").load(root)
    rows = {r["Patient ID"]: r for r in info["circor"]["chosen"]}
    assert {rows[s]["Murmur"] for s in circor.subjects} == {"Absent", "Present"}
    for path, s, y, pooled in zip(circor.paths, circor.subjects, circor.labels, circor.pool_labels):
        loc = Path(path).stem.split("_")[1]  # murmur audible at this location; the pooled label is the patient's
        assert y == (rows[s]["Murmur"] == "Present" and loc in rows[s]["Murmur locations"].split("+"))
        assert pooled == (rows[s]["Murmur"] == "Present")
    zch = get_task("zchsound").load(root)
    diag = {r["fileName"]: r["diagnosis"] for r in info["zchsound"]["chosen"]}
    assert len(zch) == len(diag)
    assert all(y == (diag[Path(p).name] != "Normal") for p, y in zip(zch.paths, zch.labels))


def test_missing_dataset_names_the_expected_layout(tmp_path):
    with pytest.raises(TaskError, match=r"ICBHI 2017 not found under .*icbhi/ICBHI_final_database"):
        get_task("T7").load(tmp_path)
    (tmp_path / "mmlung").mkdir()
    with pytest.raises(TaskError, match="extract_mmlung.py"):
        get_task("T13").load(tmp_path)


def test_split_lists_are_read_without_running_code(tmp_path):
    good = miniature.save_object_list(tmp_path / "ok.npy", ["a", "b"])
    assert load_name_list(good) == ["a", "b"]
    np.save(tmp_path / "plain.npy", np.array(["train", "test"]))
    assert load_name_list(tmp_path / "plain.npy") == ["train", "test"]

    class Evil:
        def __reduce__(self):
            return (shutil.rmtree, (str(tmp_path / "victim"),))

    (tmp_path / "victim").mkdir()
    np.save(tmp_path / "evil.npy", np.array([Evil()], dtype=object), allow_pickle=True)
    with pytest.raises(TaskError, match="refusing to unpickle shutil.rmtree"):
        load_name_list(tmp_path / "evil.npy")
    assert (tmp_path / "victim").is_dir()


# ---------------------------------------------------------------------------------------------- input policies


def test_pad_whole_matches_opera_layouts():
    seg = np.arange(1, 4, dtype=np.float32)  # 3 samples
    assert bench.pad_whole(seg, 7, "repeat").tolist() == [3, 1, 2, 3, 1, 2, 3]  # tail repeated in front
    assert bench.pad_whole(seg, 7, "zero").tolist() == [1, 2, 3, 1, 2, 3, 0]  # tiled while < half, zeros after
    assert bench.pad_whole(seg, 5, "zero").tolist() == [1, 2, 3, 0, 0]  # >= half: zero-padded at the end
    assert bench.pad_whole(seg, 2, "repeat") is seg


@pytest.mark.numerics
def test_whole_policy_embeds_the_trimmed_padded_recording(tmp_path):
    """CE/CT path through a fast stand-in encoder: same numbers as doing each step by hand."""
    from toy_encoder import ToyEncoder

    from acula.audio import frontend
    from acula.audio.io import load_audio

    enc = ToyEncoder(n_mels=64, dim=5)
    enc.name = "opera-ce"
    short = miniature.write_wav(tmp_path / "short.wav", seconds=0.6, sr=8000, seed=1)
    long = miniature.write_wav(tmp_path / "long.wav", seconds=2.5, sr=16000, seed=2)
    import soundfile as sf

    sf.write(tmp_path / "silent.wav", np.zeros(8000, np.float32), 16000)
    emb = bench.embed_task(enc, [str(short), str(long), str(tmp_path / "silent.wav")], InputPolicy("whole", 2.0))
    assert emb.paths == [str(short), str(long)] and "no signal" in emb.skipped_reasons[0]
    wave, _ = frontend.trim_silence(load_audio(short), 60.0, 1600, 800)
    x = frontend.logmel(torch.from_numpy(bench.pad_whole(wave, 32000, "repeat"))[None])
    assert x.shape[1] == frontend.frames_for(32000)
    want = enc.forward_feature(x)[0].detach()
    assert_close(emb.embeddings[0], want, encoder_tol(enc, want, front_end=True), "embed_task vs by hand")


# ---------------------------------------------------------------------------------------------- whole benchmark


@pytest.mark.slow
def test_full_benchmark_on_every_task(full_run):
    rows = read_rows(full_run / "results.csv")
    # every task, each pooling task followed by its per-patient row
    pooled = {"circor-murmur", "circor-outcome", "sprsound-disease"}
    assert [r["task"] for r in rows] == [i for t in list_tasks() for i in (t.id, f"{t.id}@patient")[:1 + (t.id in pooled)]]
    bad = {r["task"]: r["error"] for r in rows if r["status"] != "ok"}
    assert not bad
    for r in rows:
        task = get_task(r["task"].split("@")[0])
        assert r["metric"] == task.metric and r["n_seeds"] == "2"
        value = float(r["mean"])
        assert (0 <= value <= 1) if task.metric == "AUROC" else value >= 0
        assert int(r["n_train"]) > 0 and int(r["n_test"]) > 0
    seeds = read_rows(full_run / "results_seeds.csv")
    assert len(seeds) == 2 * len(rows) and {s["seed"] for s in seeds} == {"0", "1"}
    assert all(s["std_folds"] for s in seeds if s["metric"] == "MAE")  # LOOCV/LOSO spread over folds kept
    md = (full_run / "results.md").read_text()
    assert md.count("| ok |") == len(rows) and "labels: 0 = Healthy, 1 = COPD" in md
    names = sorted(p.name for p in (full_run / "features").glob("*.npz"))
    assert len(names) == len(list_tasks()) and all(n.split("-")[-1][:-4].isalnum() for n in names)


@pytest.mark.slow
def test_roc_scores_and_figures(full_run, tmp_path):
    """Every AUROC task leaves its first-seed test probabilities; `acula figures roc` overlays runs."""
    from sklearn.metrics import roc_auc_score

    from acula.cli import main

    auroc_tasks = [t.id for t in list_tasks() if t.metric == "AUROC"]
    with np.load(full_run / "roc_scores.npz") as z:
        assert sorted({k.split("/")[0] for k in z.files}) == sorted(auroc_tasks)
        seed0 = next(s for s in read_rows(full_run / "results_seeds.csv")
                     if s["metric"] == "AUROC" and s["seed"] == "0" and not s["std_folds"])  # a fixed test split
        y, score = z[f"{seed0['task']}/y"], z[f"{seed0['task']}/score"]
    assert roc_auc_score(y, score[:, 1]) == pytest.approx(float(seed0["value"]), abs=5e-5)  # the CSV's 4 decimals
    assert (full_run / "roc.png").stat().st_size > 1000
    out = tmp_path / "both.png"
    assert main(["figures", "roc", str(full_run / "roc_scores.npz"), str(full_run / "roc_scores.npz"),
                 "--labels", "a,b", "--out", str(out)]) == 0
    assert out.stat().st_size > 1000


@pytest.mark.slow
def test_cache_is_reused_and_a_foreign_fingerprint_refused(full_run, mini, encoder):
    """The full run's T19 features are reused; tampered or stale ones are refused and recomputed."""
    log: list[str] = []
    task = get_task("T19")
    cache = next((full_run / "features").glob("T19-*.npz"))
    again = full_run / "again"
    shutil.copytree(full_run / "features", again / "features")
    bench.run_bench(encoder, [task], again, data_root=mini[0], seeds=(0,), epochs=1, log=log.append)
    cache = again / "features" / cache.name
    assert any(f"features: cached {cache.name}" in m for m in log) and not any("embedded" in m for m in log)
    # same file name, features made with other preprocessing: refused, recomputed, overwritten
    from acula.extract import Embeddings

    emb = Embeddings.load(cache)
    emb.config["key"]["frontend_fingerprint"] = "0" * 16
    emb.save(cache)
    log.clear()
    rows = bench.run_bench(encoder, [task], again, data_root=mini[0], seeds=(0,), epochs=1, log=log.append)
    assert any("refusing cached features" in m and "frontend_fingerprint" in m for m in log)
    assert rows[0]["status"] == "ok" and Embeddings.load(cache).config["key"]["frontend_fingerprint"] != "0" * 16
    # another file list under the same fingerprint: refused too
    extra = mini[0] / "nosemic" / "audio" / "21_0_sit_14.0.wav"
    miniature.write_wav(extra, seed=5)
    try:
        log.clear()
        bench.run_bench(encoder, [task], again, data_root=mini[0], seeds=(0,), epochs=1, log=log.append)
        assert any("another file list" in m for m in log) and any("embedded 9 recordings" in m for m in log)
    finally:
        extra.unlink()


def test_bad_inputs_fail_their_task_only(mini, encoder, tmp_path):
    audio = [miniature.write_wav(tmp_path / "a" / f"{i}.wav", seconds=0.5, seed=i) for i in range(8)]
    good = miniature.write_csv(tmp_path / "good.csv", [  # relative paths; both labels in every split
        {"audio_path": f"a/{i}.wav", "label": "xy"[(i + i // 4) % 2], "split": ["train", "train", "val", "test"][i % 4]}
        for i in range(8)])
    unknown = miniature.write_csv(tmp_path / "unknown.csv", [
        {"audio_path": str(audio[0]), "label": "x", "split": "train"},
        {"audio_path": str(audio[1]), "label": "y", "split": "train"},
        {"audio_path": str(audio[2]), "label": "z", "split": "test"}])
    one_class = miniature.write_csv(tmp_path / "oneclass.csv", [
        {"audio_path": str(p), "label": lab, "split": s}
        for p, lab, s in zip(audio, ["x", "y", "x", "x"], ["train", "train", "val", "test"])])
    not_number = miniature.write_csv(tmp_path / "reg.csv", [{"audio_path": str(audio[0]), "label": "tall"}])
    tasks = [get_task("T7"), get_task("T19"), bench.csv_task(good), bench.csv_task(unknown),
             bench.csv_task(one_class), bench.csv_task(not_number, kind="regression")]
    nosemic_only = tmp_path / "root"
    shutil.copytree(mini[0] / "nosemic", nosemic_only / "nosemic")
    log: list[str] = []
    rows = bench.run_bench(encoder, tasks, tmp_path / "out", data_root=nosemic_only, seeds=(0,), epochs=1,
                           log=log.append)
    status = {r["task"]: (r["status"], r["error"]) for r in rows}
    assert status["T7"][0] == "error" and "ICBHI 2017 not found" in status["T7"][1]
    assert status["T19"][0] == "ok" and status["good"][0] == "ok"
    assert status["unknown"][0] == "error" and "label 'z' (test) never appears in the train split" in status["unknown"][1]
    assert status["oneclass"][0] == "error" and "val split has one class only" in status["oneclass"][1]
    assert status["reg"][0] == "error" and "row 2: label 'tall' is not a number" in status["reg"][1]
    md = (tmp_path / "out" / "results.md").read_text()
    assert md.count("**error**") == 4 and "0 = x, 1 = y" in md


def test_cli_errors_are_messages(tmp_path):
    err = io.StringIO()
    with redirect_stderr(err):
        assert cli_main(["bench", "--out", str(tmp_path)]) == 2
        assert cli_main(["bench", "--tasks", "T99", "--data-root", str(tmp_path), "--out", str(tmp_path)]) == 2
        assert cli_main(["bench", "--tasks", "T7", "--out", str(tmp_path)]) == 2
    text = err.getvalue()
    assert "--tasks" in text and "unknown task 'T99'" in text and "--data-root DIR is required" in text


# ---------------------------------------------------------------------------------------------- custom task on real audio


@pytest.mark.slow
def test_custom_csv_task_on_real_heart_sounds(shared_dir, tmp_path):
    """Normal vs any valve disease on 80 real Yaseen recordings; no split column -> stratified file split."""
    src = shared_dir / "data" / "heart-yaseen"
    rows = miniature.read_csv(src / "labels.csv")
    normal = [r for r in rows if r["label"] == "N"][:40]
    disease = [r for c in ("MR", "MS", "MVP") for r in rows if r["label"] == c][::15][:40]
    table = [{"audio_path": r["path"], "label": "normal" if r["label"] == "N" else "valve disease"}
             for r in normal + disease]
    csv_path = miniature.write_csv(tmp_path / "heart.csv", table)
    for r in table:  # relative paths resolve against the CSV's folder
        (tmp_path / r["audio_path"]).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / r["audio_path"]).symlink_to(src / r["audio_path"])
    out = tmp_path / "out"
    with redirect_stdout(io.StringIO()) as printed:
        code = cli_main(["bench", "--encoder", "opera-gt", "--preset", "tiny", "--task-csv", str(csv_path), "--out",
                         str(out), "--seeds", "2", "--epochs", "5", "--no-progress"])
    assert code == 0
    (row,) = read_rows(out / "results.csv")
    assert row["task"] == "heart" and row["status"] == "ok" and row["metric"] == "AUROC"
    assert 0.0 <= float(row["mean"]) <= 1.0
    assert int(row["n_train"]) + int(row["n_val"]) + int(row["n_test"]) == 80 and int(row["n_test"]) == 16
    assert "0 = normal, 1 = valve disease" in printed.getvalue()


# ---------------------------------------------------------------------------------------------- compare


def _results(folder: Path, rows: list[tuple], seeds: dict[str, list[float]]) -> Path:
    folder.mkdir()
    miniature.write_csv(folder / "results.csv", [
        {"task": t, "name": t, "metric": m, "mean": v, "std": 0.01, "n_seeds": 5, "status": s, "error": ""}
        for t, m, v, s in rows])
    miniature.write_csv(folder / "results_seeds.csv", [
        {"task": t, "metric": "AUROC", "seed": i, "value": v} for t, vs in seeds.items() for i, v in enumerate(vs)])
    return folder / "results.csv"


def test_compare_pairs_tasks_and_flips_mae(tmp_path):
    a = _results(tmp_path / "a", [("T1", "AUROC", 0.60, "ok"), ("T7", "AUROC", 0.70, "ok"), ("T10", "AUROC", 0.65, "ok"),
                                  ("T13", "MAE", 0.50, "ok"), ("T19", "MAE", 2.0, "ok"), ("T2", "AUROC", "", "error")],
                 {"T7": [0.69, 0.70, 0.71], "T10": [0.60, 0.65, 0.70]})
    b = _results(tmp_path / "b", [("T1", "AUROC", 0.66, "ok"), ("T7", "AUROC", 0.80, "ok"), ("T10", "AUROC", 0.69, "ok"),
                                  ("T13", "MAE", 0.40, "ok"), ("T19", "MAE", 1.9, "ok"), ("T2", "AUROC", 0.7, "ok")],
                 {"T7": [0.79, 0.80, 0.81], "T10": [0.63, 0.69, 0.74]})
    text, stats = bench.compare(a, b)
    assert stats["tasks"] == 5 and stats["b_better"] == 5  # lower MAE counts as better
    assert stats["per_task"]["T13"]["diff"] == pytest.approx(0.2)  # relative MAE reduction
    assert stats["per_task"]["T7"]["p"] < 0.01 and np.isnan(stats["per_task"]["T1"]["p"])
    # seed s of both runs shares its split: paired, the small consistent gain is clear; unpaired it is not
    t10 = stats["per_task"]["T10"]
    assert t10["test"] == "paired" and t10["p"] < 0.02
    assert bench.seed_test({"0": 0.60, "1": 0.65, "2": 0.70}, {"5": 0.63, "6": 0.69, "7": 0.74})[1] == "Welch"
    assert bench.seed_test({"0": 0.60, "1": 0.65, "2": 0.70}, {"5": 0.63, "6": 0.69, "7": 0.74})[0] > 0.3
    assert stats["wilcoxon_p"] == pytest.approx(0.0625)  # 5 of 5 positive, exact two-sided
    assert "T2" in text and "skipped: A failed" in text and "Wilcoxon signed-rank over 5 tasks" in text
    with redirect_stdout(io.StringIO()) as printed:
        assert cli_main(["bench", "compare", str(a), str(b)]) == 0
    assert "T7" in printed.getvalue()
