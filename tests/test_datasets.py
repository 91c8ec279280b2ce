"""The real release readers (acula.datasets) on ../shared/data, their tasks and reports, and bad release folders."""

from __future__ import annotations

import collections
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from acula.datasets import DatasetError, read
from acula.datasets import circor as circor_reader
from acula.evaluate.tasks import get_task
from acula.text.reports import build_report_table


@pytest.fixture(scope="module")
def data(shared_dir: Path) -> Path:
    d = shared_dir / "data"
    if not (d / "sprsound" / "metadata.csv").is_file() or not (d / "circor" / "training_data").is_dir():
        pytest.skip(f"the SPRSound / CirCor releases are not in {d}")
    return d


@pytest.fixture(scope="module")
def spr(data):
    return read("sprsound", data)


@pytest.fixture(scope="module")
def cc(data):
    return read("circor", data)


def test_sprsound_release_as_documented(spr):
    """Counts of SOURCE.md: 2328 recordings of 251 children, the record labels, 7660 events, 247 diagnoses."""
    recs = spr.recordings
    assert len(recs) == 2328 and not spr.skipped and len({r.subject for r in recs}) == 251
    labels = collections.Counter(r.fields["record_annotation"] for r in recs)
    assert labels == {"Normal": 1544, "CAS": 168, "DAS": 323, "CAS & DAS": 114, "Poor Quality": 179}
    events = collections.Counter(t for r in recs for _, _, t in r.fields["events"])
    assert sum(events.values()) == 7660 and events["Fine Crackle"] == 1087 and events["Stridor"] == 17
    assert len({r.subject for r in recs if r.fields["disease"]}) == 247
    assert all(r.path.endswith(".flac") and r.subject == r.id.split("_")[0] for r in recs)
    assert {r.fields["location_code"] for r in recs} == {"p1", "p2", "p3", "p4"}


def test_circor_release_as_documented(cc):
    """283 Patient IDs in 262 subjects (21 children seen twice), 937 recordings, the location labels, outcome."""
    recs = cc.recordings
    assert len(recs) == 937 and not cc.skipped
    assert len({r.fields["Patient ID"] for r in recs}) == 283 and len({r.subject for r in recs}) == 262
    at = collections.Counter(r.fields["murmur_at_location"] for r in recs)
    assert at == {"Absent": 750, "Present": 141, "Unknown": 46}  # SOURCE.md's murmur_at_this_location
    patients = {r.fields["Patient ID"]: r.fields["Outcome"] for r in recs}
    assert collections.Counter(patients.values()) == {"Normal": 148, "Abnormal": 135}
    # every pair linked by Additional ID is one subject, named by the smaller id
    for r in recs:
        other = r.fields["Additional ID"]
        if other:
            assert r.subject == min(r.fields["Patient ID"], other, key=int)


def test_circor_subjects_follow_additional_id_transitively():
    pats = {"3": {"Additional ID": "1"}, "1": {"Additional ID": ""}, "2": {"Additional ID": "3"},
            "9": {"Additional ID": "nan"}}
    assert circor_reader.subjects_of(pats) == {"3": "1", "1": "1", "2": "1", "9": "9"}


@pytest.mark.parametrize("task_id", ["sprsound-adventitious", "sprsound-4class", "sprsound-disease",
                                     "circor-murmur", "circor-outcome"])
def test_real_tasks_split_by_subject(data, task_id):
    d = get_task(task_id).load(data)
    parts = {p: set(d.subjects[d.part(p)]) for p in ("train", "val", "test")}
    assert not parts["train"] & parts["test"] and not parts["train"] & parts["val"] and not parts["val"] & parts["test"]
    if task_id.startswith("circor"):  # a child with two Patient IDs never straddles the split
        pid_of = dict(zip(d.paths, d.pool))
        assert len(set(d.pool)) > len(set(d.subjects))
        by_subject = collections.defaultdict(set)
        for p, s in zip(d.paths, d.subjects):
            by_subject[s].add(pid_of[p])
        assert any(len(v) == 2 for v in by_subject.values())
    if d.pool is not None:  # one pooled label per patient
        per = collections.defaultdict(set)
        for g, y in zip(d.pool, d.pool_labels):
            per[g].add(int(y))
        assert all(len(v) == 1 for v in per.values())


def test_task_labels_follow_the_annotation(data, spr):
    four = get_task("sprsound-4class").load(data)
    assert len(four) == 2328 - 179 and collections.Counter(four.labels.tolist()) == {0: 1544, 1: 168, 2: 323, 3: 114}
    murmur = get_task("circor-murmur").load(data)
    assert len(murmur) == 937 - 46 and int(murmur.labels.sum()) == 141 and int(murmur.pool_labels.max()) == 1
    dx = get_task("sprsound-disease").load(data)
    disease = {r.path: r.fields["disease"] for r in spr.recordings}
    assert {disease[p] for p, y in zip(dx.paths, dx.labels) if y == 0} == {"Control Group"}
    assert {disease[p] for p, y in zip(dx.paths, dx.labels) if y == 1} == {"Pneumonia (non-severe)",
                                                                           "Pneumonia (severe)"}


def test_reports_state_only_the_annotation(data, spr):
    res = build_report_table("sprsound", [data / "sprsound"], seed=0, profile="clinical")
    assert len(res.rows) == 2328 - 179 and {why for _, why in res.skipped} == {"poor-quality recording"}
    by_id = {r.id: r for r in spr.recordings}
    for row in res.rows:
        rec = by_id[row["record_id"]]
        text = row["Gen_Report"]
        types = {t for _, _, t in rec.fields["events"]}
        assert ("wheezes in" in text) == ("Wheeze" in types) and ("fine crackles in" in text) == ("Fine Crackle" in types)
        assert "male" not in text  # the clinical profile leaves sex out
        if rec.fields["disease"] == "Control Group":
            assert "control" in text
    wheeze = next(r for r in res.rows if "wheezes in" in r["Gen_Report"])
    n = len(by_id[wheeze["record_id"]].fields["events"])
    assert f"of the {n} annotated" in wheeze["Gen_Report"] or n == 1
    cc = build_report_table("circor-location", [data / "circor"], seed=0)
    assert len(cc.rows) == 937 and len({r["subject_id"] for r in cc.rows}) == 262
    for row in cc.rows:
        if row["Murmur"] == "Present":
            heard = row["Recording location"] in row["Murmur locations"].split("+")
            assert (("not audible" in row["Gen_Report"]) or ("No murmur is heard at this site" in row["Gen_Report"])) \
                == (not heard)
        assert Path(row["audio_path"]).is_file()


# ---------------------------------------------------------------------------------------------- layouts and bad input


def _circor_copy(data: Path, tmp: Path, pids: list[str], wav: bool) -> Path:
    """A release folder of a few patients; audio converted back to WAV when asked (users convert either way)."""
    src, dst = data / "circor" / "training_data", tmp / "circor" / "training_data"
    dst.mkdir(parents=True)
    for pid in pids:
        for f in src.glob(f"{pid}*"):
            if f.suffix == ".flac" and wav:
                x, sr = sf.read(f, dtype="int16")
                sf.write(dst / f"{f.stem}.wav", x, sr, subtype="PCM_16")
            else:
                shutil.copyfile(f, dst / f.name)
    return tmp


def test_circor_wav_copy_reads_the_same(data, cc, tmp_path):
    pids = ["2530", "9979", "14998"]
    root = _circor_copy(data, tmp_path, pids, wav=True)
    got = read("circor", root)
    want = [r for r in cc.recordings if r.fields["Patient ID"] in pids]
    assert sorted(r.id for r in got.recordings) == sorted(r.id for r in want)
    assert all(r.path.endswith(".wav") for r in got.recordings)
    a = sf.read(next(r.path for r in got.recordings if r.id == "9979_AV"))[0]
    b = sf.read(next(r.path for r in want if r.id == "9979_AV"))[0]
    np.testing.assert_array_equal(a, b)  # lossless both ways


def test_missing_audio_names_the_first_file_and_extensions(data, tmp_path):
    root = _circor_copy(data, tmp_path, ["2530"], wav=False)
    for f in (root / "circor" / "training_data").glob("*.flac"):
        f.unlink()
    with pytest.raises(DatasetError, match=r"first listed recording 2530_AV is missing \(tried 2530_AV\.wav, 2530_AV\.flac\)"):
        read("circor", root)


def test_bad_circor_folder_is_named(data, tmp_path):
    root = _circor_copy(data, tmp_path, ["2530", "9979"], wav=False)
    td = root / "circor" / "training_data"
    (root / "circor" / "training_data.csv").write_text("Patient ID,Murmur\n2530,Absent\n9979,Present\n4242,Absent\n")
    (td / "9979.txt").write_text((td / "9979.txt").read_text().replace("#Murmur: Present", "#Murmur: Maybe"))
    (td / "2530_PV.flac").unlink()
    res = read("circor", root)
    reasons = {Path(f).name: why for f, why in res.skipped}
    assert reasons["4242.txt"] == "listed in training_data.csv but missing"
    assert "Murmur 'Maybe'" in reasons["9979.txt"]
    assert "no audio for 2530_PV" in reasons["2530.txt"]
    assert {r.id for r in res.recordings} == {"2530_AV", "2530_TV", "2530_MV"}
    with pytest.raises(DatasetError, match="4242.txt: listed in training_data.csv but missing"):
        read("circor", root, strict=True)


def test_bad_sprsound_folder_is_named(tmp_path):
    d = tmp_path / "sprsound" / "train"
    d.mkdir(parents=True)
    x = (0.1 * np.sin(np.arange(8000) / 5)).astype(np.float32)
    for stem, ann in (("1_3.0_0_p1_1", {"record_annotation": "Normal", "event_annotation": []}),
                      ("1_3.0_0_p2_2", {"record_annotation": "Crackly"}),
                      ("2_4.1_1_p3_3", None), ("3_5.0_1_p4_4", {"record_annotation": "CAS", "event_annotation": [
                          {"start": "10", "end": "900", "type": "Whistle"}]})):
        sf.write(d / f"{stem}.wav", x, 8000)
        if ann is not None:
            (d / f"{stem}.json").write_text(json.dumps(ann))
    (d / "4_5.0_1_p4_5.json").write_text(json.dumps({"record_annotation": "Normal", "event_annotation": []}))
    res = read("sprsound", tmp_path)
    reasons = {Path(f).name: why for f, why in res.skipped}
    assert "record_annotation 'Crackly'" in reasons["1_3.0_0_p2_2.json"]
    assert reasons["2_4.1_1_p3_3.wav"] == "no JSON annotation beside this recording"
    assert "event 0 type 'Whistle'" in reasons["3_5.0_1_p4_4.json"]
    assert "tried 4_5.0_1_p4_5.wav, 4_5.0_1_p4_5.flac" in reasons["4_5.0_1_p4_5.json"]
    assert [r.id for r in res.recordings] == ["1_3.0_0_p1_1"]
    with pytest.raises(DatasetError, match="1_3.0_0_p2_2.json"):
        read("sprsound", tmp_path, strict=True)
