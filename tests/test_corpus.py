"""`acula corpus build`: merging report CSVs, audio resolution, the leakage guard and its report."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from acula.cli import build_parser
from acula.data.corpus import CorpusError, build_corpus, read_test_spec, subject_key
from acula.datasets.manifest import read_manifest

COLS = ["record_id", "subject_id", "dataset", "Gen_Report", "provenance", "Diagnosis"]


def _wav(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.zeros(800, dtype=np.float32), 8000)


def _csv(path: Path, rows: list[dict], cols: list[str] | None = None) -> Path:
    cols = cols or list(dict.fromkeys(k for r in rows for k in r))
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        w.writerows(rows)
    return path


@pytest.fixture
def world(tmp_path):
    """ICBHI (audio by --audio-root + pattern), KAUH (audio_path column), CirCor (glob per patient)."""
    icbhi_audio = tmp_path / "icbhi_audio"
    icbhi = [
        ("101_1b1_Al_sc_Meditron", "101", "COPD"), ("101_1b1_Pr_sc_Meditron", "101", "COPD"),
        ("102_1b1_Ar_sc_Meditron", "102", "URTI"), ("103_2b2_Ar_mc_LittC2SE", "103", "Healthy"),
        ("104_1b1_Tc_sc_Meditron", "104", "COPD"),  # its audio is missing
        ("105_1b1_Tc_sc_Meditron", "105", ""),  # empty report
    ]
    rows = []
    for rid, sid, diag in icbhi:
        if not rid.startswith("104"):
            _wav(icbhi_audio / f"{rid}.wav")
        rows.append({"record_id": rid, "subject_id": sid, "dataset": "icbhi",
                     "Gen_Report": f"Lung sounds of patient {sid}; diagnosis {diag}." if diag else "",
                     "provenance": "icbhi@1;seed=0", "Diagnosis": diag})
    rows.append(dict(rows[2]))  # an exact duplicate row
    icbhi_csv = _csv(tmp_path / "icbhi_reports.csv", rows, COLS)

    kauh_dir = tmp_path / "kauh"
    kauh = []
    for rid, sid in (("BP101_asthma,E W,P L M,60,M", "101"), ("BP7_N,N,A R U,33,M", "7"), ("DP7_N,N,A R U,33,M", "7"),
                     ("BP8_COPD,C,P R L,70,F", "8")):
        _wav(kauh_dir / "AudioFiles" / f"{rid}.wav")
        kauh.append({"record_id": rid, "subject_id": sid, "dataset": "kauh", "Gen_Report": f"KAUH report {rid}.",
                     "audio_path": f"AudioFiles/{rid}.wav", "Sound_Type": "x"})
    kauh_csv = _csv(kauh_dir / "kauh_reports.csv", kauh)

    circor_audio = tmp_path / "circor"
    for name in ("9979_AV", "9979_MV", "50001_PV"):
        _wav(circor_audio / f"{name}.wav")
    circor_csv = _csv(tmp_path / "circor_reports.csv", [
        {"record_id": "9979", "subject_id": "9979", "dataset": "circor", "Gen_Report": "Murmur present."},
        {"record_id": "50001", "subject_id": "50001", "dataset": "circor", "Gen_Report": "Murmur absent."},
    ])

    # the evaluation tasks' test splits, in three formats
    official = tmp_path / "ICBHI_challenge_train_test.txt"
    official.write_text("101_1b1_Al_sc_Meditron\ttest\n102_1b1_Ar_sc_Meditron\ttrain\n200_1b1_Al_sc_Meditron\ttest\n")
    kauh_split = _csv(tmp_path / "kauh_split.csv", [{"subject_id": "7", "split": "test", "dataset": "kauh"},
                                                     {"subject_id": "8", "split": "train", "dataset": "kauh"}])
    circor_list = tmp_path / "circor_test_subjects.txt"
    circor_list.write_text("# patient ids\n9979\n")
    return {"tmp": tmp_path, "reports": [icbhi_csv, kauh_csv, circor_csv],
            "roots": {"icbhi": str(icbhi_audio), "circor": str(circor_audio)},
            "patterns": {"circor": "{record_id}_*.wav"},
            "exclude": [str(official), str(kauh_split), f"circor={circor_list}"]}


def _build(world, **kw):
    out = world["tmp"] / "out" / "manifest.csv"
    args = dict(audio_roots=world["roots"], audio_patterns=world["patterns"], exclude=world["exclude"])
    args.update(kw)
    return out, build_corpus(world["reports"], out, **args)


def test_every_recording_of_every_test_subject_is_excluded(world):
    out, res = _build(world)
    kept = {(r["dataset"], r["record_id"], Path(r["audio_path"]).name) for r in res.rows}
    assert kept == {
        ("icbhi", "102_1b1_Ar_sc_Meditron", "102_1b1_Ar_sc_Meditron.wav"),
        ("icbhi", "103_2b2_Ar_mc_LittC2SE", "103_2b2_Ar_mc_LittC2SE.wav"),
        # KAUH patient 101 is not ICBHI patient 101
        ("kauh", "BP101_asthma,E W,P L M,60,M", "BP101_asthma,E W,P L M,60,M.wav"),
        ("kauh", "BP8_COPD,C,P R L,70,F", "BP8_COPD,C,P R L,70,F.wav"),
        ("circor", "50001", "50001_PV.wav"),
    }
    # one test recording of ICBHI patient 101 takes the patient's other recording with it
    assert not any(r["subject_id"] == "icbhi:101" for r in res.rows)
    c = {ds: vars(v) for ds, v in res.counts.items()}
    assert c["icbhi"] == {"reports": 7, "empty_report": 1, "missing_audio": 1, "test_excluded": 2,
                          "test_subjects": 1, "duplicate": 1, "kept": 2}
    assert c["kauh"] == {"reports": 4, "empty_report": 0, "missing_audio": 0, "test_excluded": 2,
                         "test_subjects": 1, "duplicate": 0, "kept": 2}
    assert c["circor"] == {"reports": 2, "empty_report": 0, "missing_audio": 0, "test_excluded": 2,
                           "test_subjects": 1, "duplicate": 0, "kept": 1}
    reasons = {(d["record_id"], d["reason"]) for d in res.dropped}
    assert ("104_1b1_Tc_sc_Meditron", "audio file not found") in reasons
    assert ("105_1b1_Tc_sc_Meditron", "empty report") in reasons
    assert ("102_1b1_Ar_sc_Meditron", "duplicate of record 102_1b1_Ar_sc_Meditron") in reasons
    official = res.specs[0]
    assert official.matched == 1 and official.unmatched == ["200_1b1_Al_sc_Meditron"]  # not in this corpus


def test_manifest_is_namespaced_atomic_and_readable(world):
    out, res = _build(world)
    report = res.write(out)
    rows = read_manifest(out, required=("audio_path", "Gen_Report"))
    assert len(rows) == 5 and all(Path(r["audio_path"]).is_file() for r in rows)
    assert {r["subject_id"] for r in rows} == {"icbhi:102", "icbhi:103", "kauh:101", "kauh:8", "circor:50001"}
    assert {r["source_subject_id"] for r in rows} == {"102", "103", "101", "8", "50001"}
    header = out.read_text(encoding="utf-8").splitlines()[0].split(",")
    assert header[:6] == ["audio_path", "Gen_Report", "subject_id", "dataset", "record_id", "source_subject_id"]
    assert "Diagnosis" in header and "Sound_Type" in header  # label/source columns travel along
    leak = json.loads(report.read_text())
    assert report.name == "manifest.leakage.json" and leak["leakage_guard"] is True
    assert leak["datasets"]["icbhi"]["test_excluded"] == 2 and leak["rows"] == 5
    assert [e["unmatched_entries"] for e in leak["exclude_test"]] == [1, 0, 0]
    assert len(leak["dropped"]) == 9
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_namespacing_keeps_equal_ids_apart():
    assert subject_key("icbhi", "101") == "icbhi:101" != subject_key("kauh", "101")
    assert subject_key("icbhi-cycle", "101") == "icbhi:101"  # variants of one dataset share patients
    assert subject_key("icbhi", "icbhi:101") == "icbhi:101"


def test_bad_inputs_give_clear_errors(world, tmp_path):
    bad = _csv(tmp_path / "bad.csv", [{"record_id": "1", "dataset": "kauh", "report": "x"}])
    with pytest.raises(CorpusError, match=r"bad\.csv: missing column\(s\) 'subject_id', 'Gen_Report'"):
        build_corpus([bad], tmp_path / "m.csv", exclude=world["exclude"])
    with pytest.raises(CorpusError, match="--exclude-test"):
        build_corpus(world["reports"], tmp_path / "m.csv", audio_roots=world["roots"])
    with pytest.raises(CorpusError, match="--audio-root icbhi=DIR"):
        build_corpus(world["reports"], tmp_path / "m.csv", exclude=world["exclude"])
    bare = _csv(tmp_path / "bare.csv", [{"subject_id": "7", "split": "test"}])
    with pytest.raises(CorpusError, match="has no dataset"):
        _build(world, exclude=[str(bare)])
    bare_list = tmp_path / "bare.txt"
    bare_list.write_text("7\n")  # KAUH patient 7, but which dataset?
    with pytest.raises(CorpusError, match="is a subject id"):
        _build(world, exclude=[str(bare_list)])
    with pytest.raises(CorpusError, match="not found"):
        _build(world, exclude=[str(tmp_path / "nope.txt")])


def test_test_split_formats(tmp_path):
    split = _csv(tmp_path / "s.csv", [{"audio_path": "a/x.wav", "split": "test"}, {"audio_path": "a/y.wav", "split": "val"}])
    spec = read_test_spec(f"kauh={split}")
    assert spec.dataset == "kauh" and [(e.kind, e.value) for e in spec.entries] == [("audio", "a/x.wav")]
    assert [e.value for e in read_test_spec(str(split), test_splits=("test", "val")).entries] == ["a/x.wav", "a/y.wav"]
    tsv = tmp_path / "s.tsv"
    tsv.write_text("subject_id\tsplit\n12\ttest\n13\ttrain\n")
    assert [(e.kind, e.value) for e in read_test_spec(f"tr={tsv}").entries] == [("subject", "12")]
    lst = tmp_path / "l.txt"
    lst.write_text("BP7_N,N,A R U,33,M.wav\nH001_L1 test\nH002_L1 train\n")
    assert [e.value for e in read_test_spec(str(lst)).entries] == ["BP7_N,N,A R U,33,M.wav", "H001_L1"]


def test_audio_paths_from_a_column_can_be_rebased_and_no_exclusion_must_be_explicit(world):
    out, res = _build(world, exclude=[], allow_no_exclusion=True)
    assert res.guard is False and sum(c.kept for c in res.counts.values()) == 4 + 4 + 3
    # the KAUH csv's relative audio_path resolves against its own folder; --audio-root overrides that
    _, res2 = _build(world, exclude=[], allow_no_exclusion=True,
                     audio_roots={**world["roots"], "kauh": str(world["tmp"])})
    assert res2.counts["kauh"].missing_audio == 4


def test_cli_prints_the_table_and_writes_both_files(world, capsys):
    parser = build_parser()
    out = world["tmp"] / "cli" / "corpus.csv"
    args = parser.parse_args(["corpus", "build", "--reports", *map(str, world["reports"]), "--exclude-test",
                              *world["exclude"], "--audio-root", *(f"{k}={v}" for k, v in world["roots"].items()),
                              "--audio-pattern", "circor={record_id}_*.wav", "--out", str(out)])
    assert args.func(args) == 0
    text = capsys.readouterr().out
    assert "test rows" in text and "total" in text and "match no report row" in text
    assert out.is_file() and out.with_suffix(".leakage.json").is_file()


def test_cli_strict_fails_on_a_skipped_row_but_not_on_excluded_test_subjects(world):
    from acula.data.corpus import CorpusError

    parser = build_parser()
    out = world["tmp"] / "strict" / "corpus.csv"
    args = parser.parse_args(["corpus", "build", "--reports", *map(str, world["reports"]), "--exclude-test",
                              *world["exclude"], "--audio-root", *(f"{k}={v}" for k, v in world["roots"].items()),
                              "--audio-pattern", "circor={record_id}_*.wav", "--strict", "--out", str(out)])
    with pytest.raises(CorpusError, match=r"--strict: \d+ row\(s\) skipped, first: .*audio file not found"):
        args.func(args)
    assert not out.exists()


def test_reports_from_the_synthetic_corpus_build_a_manifest(tmp_path):
    """End to end with the real report builders: synthetic metadata -> reports CSV -> corpus."""
    from acula.data import synthetic
    from acula.text.reports import build_reports, write_reports_csv

    manifest = synthetic.build(tmp_path / "synth", n_heart=1, n_lung=1, n_cough=1, seed=0, progress=False)
    src = list(csv.DictReader(manifest.open(encoding="utf-8")))
    reports = []
    for ds in sorted({r["dataset"] for r in src}):
        path = tmp_path / f"{ds}.csv"
        write_reports_csv(build_reports(ds, records=[r for r in src if r["dataset"] == ds]), path)
        reports.append(path)
    heart = [r for r in src if r["dataset"] == "synth-circor"]
    split = _csv(tmp_path / "test.csv", [{"subject_id": heart[0]["subject_id"], "split": "test",
                                          "dataset": "synth-circor"}])
    out = tmp_path / "corpus.csv"
    res = build_corpus(reports, out, audio_roots={"*": str(tmp_path / "synth")}, exclude=[str(split)])
    res.write(out)
    rows = read_manifest(out, required=("audio_path", "Gen_Report"))
    assert len(rows) == len(src) - len(heart) and res.counts["synth-circor"].test_excluded == len(heart)
    assert all(r["subject_id"].split(":")[0] in {"synth-icbhi", "synth-coughvid"} for r in rows)
