"""Report builders on the real shipped metadata, field by field, plus real-layout readers and edge cases."""

from __future__ import annotations

import argparse
import csv
import json
import re
from pathlib import Path

import pytest

from acula.text.reports import (DATASETS, NothingToReport, ReportInputError, build_report_table, build_reports,
                                findings_of, register_cli, report_for, write_reports_csv)
from acula.text.reports.circor import parse_meta_report
from acula.text.reports.kauh import parse_diagnosis, parse_location, parse_name, parse_sounds

# Every shipped metadata file, by the builder that reads it.
SHIPPED = {
    "circor": ["circor/training_data.csv", "circor/validation_data.csv", "circor/test_data.csv"],
    "circor-location": ["circor/validation_data.csv"],
    "icbhi": ["icbhi/ICBHI_challenge_train_test.txt", "icbhi/ICBHI_Challenge_diagnosis.txt",
              "icbhi/ICBHI_Challenge_demographic_information.txt", "icbhi/icbhi_cycles_demographics_diagnosis.csv"],
    "icbhi-cycle": ["icbhi/icbhi_cycles_demographics_diagnosis.csv"],
    "kauh": ["kauh/metadata.csv"],
    "sprsound": ["sprsound/metadata_train.csv", "sprsound/metadata_valid.csv"],
    "zchsound": ["zchsound/metadata.csv"],
    "tr": ["respiratorydatabase-tr/Labels.csv", "respiratorydatabase-tr/recordings.csv"],
    "hf-lung": ["hf-lung/metadata.csv"],
    "coughvid": ["coughvid/metadata_compiled.csv"],
    "coswara": ["coswara/smoker_classification.csv", "coswara/gender_classification.csv"],
    "bmd": ["bmd/questions.csv"],
}
NEGATION = re.compile(r"\b(no|not|neither|nor|without|absent|undetermined|unknown|could not)\b", re.I)


def _clauses(text: str, word: str) -> list[str]:
    return [c.strip() for c in re.split(r"[.;]", text) if word in c.lower()]


def positive_mentions(text: str, word: str) -> list[str]:
    """Clauses that mention `word` without a negation cue ('no crackles', 'murmur absent' do not count)."""
    return [c for c in _clauses(text, word) if not NEGATION.search(c)]


def negative_mentions(text: str, word: str) -> list[str]:
    return [c for c in _clauses(text, word) if NEGATION.search(c)]


@pytest.fixture(scope="module")
def built(shared_dir: Path) -> dict:
    meta = shared_dir / "metadata"
    return {ds: build_report_table(ds, [meta / p for p in paths], seed=0) for ds, paths in SHIPPED.items()}


# --------------------------------------------------------------------------- every builder, every file

def test_every_builder_on_every_shipped_file(built):
    for ds, res in built.items():
        assert res.rows, ds
        for row in res.rows:
            assert row["Gen_Report"].strip() and row["findings"], (ds, row["record_id"])
            assert re.fullmatch(r"[a-z-]+@\d+;seed=0", row["provenance"]), row["provenance"]
            assert row["dataset"] == ds and row["subject_id"]
            # placeholders never leak into the text
            assert not re.search(r"\b(nan|NaN|None|Unknown|NA)\b", row["Gen_Report"]), (ds, row["Gen_Report"])
        ids = [r["record_id"] for r in res.rows]
        assert len(ids) == len(set(ids)), ds
    # row counts match the shipped tables (CoughVID rows without any metadata are skipped)
    n = {ds: len(res.rows) for ds, res in built.items()}
    assert n["circor"] == 942 + 149 + 477 and n["icbhi-cycle"] == 6898 and n["icbhi"] == 921
    assert n["kauh"] == 336 and n["sprsound"] == 1772 + 724 and n["zchsound"] == 1259 and n["tr"] == 504
    assert n["hf-lung"] == 9765 and n["bmd"] == 864 and n["coswara"] == 2746
    skipped = built["coughvid"].skipped
    assert n["coughvid"] + len(skipped) == 20072 and {why for _, why in skipped} == {"no status, symptoms or cough type"}


def test_dataset_names():
    for name in ("icbhi", "icbhi-cycle", "circor", "circor-location", "hf-lung", "coviduk", "coughvid", "sprsound",
                 "zchsound", "kauh", "tr", "coswara", "bmd", "synth-circor", "synth-icbhi", "synth-coughvid"):
        assert name in DATASETS
    with pytest.raises(KeyError, match="unknown report dataset"):
        build_reports("nope", records=[{}])


# --------------------------------------------------------------------------- field by field

def test_circor_murmur_fields(built):
    rows = built["circor"].rows
    assert {r["Murmur"] for r in rows} == {"Present", "Absent", "Unknown"}
    for r in rows:
        text, low = r["Gen_Report"], r["Gen_Report"].lower()
        if r["Murmur"] == "Present":
            assert positive_mentions(text, "murmur"), text
            for kind in ("Systolic", "Diastolic"):
                grade, timing = r[f"{kind} murmur grading"], r[f"{kind} murmur timing"]
                if grade != "nan":
                    assert f"grade {grade}" in text or f"graded {grade}" in text, (grade, text)
                if timing != "nan":
                    assert timing.lower() in low, (timing, text)
            most = r["Most audible location"]
            if most != "nan":
                valve = {"AV": "aortic", "PV": "pulmonary", "TV": "tricuspid", "MV": "mitral"}[most]
                assert re.search(rf"(loudest|most audible|heard best|heard only|confined to) at the {valve}|"
                                 rf"confined to the {valve}", text), (most, text)
            assert ("murmur", "present") in r["findings"]
        else:
            assert not positive_mentions(text, "murmur"), text
            status = "absent" if r["Murmur"] == "Absent" else "undetermined"
            assert ("murmur", status) in r["findings"]
            assert not any(k.startswith(("systolic", "diastolic", "most_audible")) for k, _ in r["findings"])
        assert ("outcome", r["Outcome"].lower()) in r["findings"]
        assert r["Outcome"].lower() in low


def test_circor_locations(built):
    rows = built["circor-location"].rows
    by_patient: dict[str, list] = {}
    for r in rows:
        by_patient.setdefault(r["subject_id"], []).append(r)
    for pid, recs in by_patient.items():
        locs = recs[0]["Recording locations:"].split("+")
        assert len(recs) == len(locs)  # one report per recording, repeats named {pid}_{loc}_{n}
        for r in recs:
            assert r["record_id"].startswith(f"{pid}_{r['Recording location']}")
            where = r["Murmur locations"].split("+")
            if r["Murmur"] == "Present" and r["Murmur locations"] != "nan":
                expect = "audible" if r["Recording location"] in where else "not audible"
                assert ("murmur_at_recording_location", expect) in r["findings"], r["Gen_Report"]


def test_circor_meta_report_round_trip(shared_dir):
    """AcuLa's Meta_Report strings parse back into exactly the patient table's murmur fields."""
    meta = shared_dir / "metadata" / "circor"
    table = {r["Patient ID"]: r for r in csv.DictReader(open(meta / "training_data.csv", encoding="utf-8"))}
    for row in csv.DictReader(open(meta / "training_data_report.csv", encoding="utf-8")):
        parsed = parse_meta_report(row["Meta_Report"])
        src = table[row["Patient_ID"]]
        for k, v in parsed.items():
            assert src[k] == v, (row["Patient_ID"], k, v, src[k])
    res = build_report_table("circor", [meta / "training_data_report.csv"])
    assert len(res.rows) == 942


def test_icbhi_cycles_crackles_and_wheezes(built):
    for r in built["icbhi-cycle"].rows:
        text = r["Gen_Report"]
        for word, col in (("crackle", "Crackles"), ("wheeze", "Wheezes")):
            if r[col] == "1":
                assert positive_mentions(text, word), text
            else:  # 0 means absent, and the report says so: "no crackles", "clear", or "wheezes are the only ..."
                assert not positive_mentions(text, word), text
                other = "Wheezes" if col == "Crackles" else "Crackles"
                affirmative = (re.search(r"\bclear\b.*adventitious|added sounds", text) if r[other] == "0"
                               else re.search(r"only (adventitious|added)", text))
                assert negative_mentions(text, word) or affirmative, text
                assert (f"{word}s", "absent") in r["findings"], text
        assert r["record_id"].split("#")[0].startswith(f"{r['Patient_ID']}_{r['Recording_Index']}_")


def test_icbhi_abbreviations_and_recordings(built):
    rows = {r["record_id"]: r for r in built["icbhi"].rows}
    r = rows["101_1b1_Al_sc_Meditron"]
    text = r["Gen_Report"]
    assert "upper respiratory tract infection" in text and "WelchAllyn Meditron" in text
    assert ("chest_location", "anterior left") in r["findings"] and r["split"] == "test"
    assert ("age", "3 years") in r["findings"] and ("sex", "female") in r["findings"]
    for r in rows.values():
        if "n_cycles" in r:
            k, n = r["crackle_cycles"], r["n_cycles"]
            assert ("crackles_cycles", f"{k}/{n}") in r["findings"]
    cyc = next(x for x in built["icbhi-cycle"].rows if x["Diagnosis"] == "COPD")
    assert "chronic obstructive pulmonary disease" in cyc["Gen_Report"]


def test_kauh_fields(built):
    for r in built["kauh"].rows:
        low = r["Gen_Report"].lower()
        for d in parse_diagnosis(r["Diagnosis"]):
            if d == "normal":
                assert "diagnosis: normal" in low or "no respiratory diagnosis" in low, low
            else:
                assert d.lower() in low, (d, low)
        assert str(int(r["Age"])) in low
    one = next(r for r in built["kauh"].rows if r["ID"] == "DP63")  # 'P R L ' = posterior right lower
    assert ("chest_location", "posterior right lower") in one["findings"]
    assert ("stethoscope_filter", "diaphragm") in one["findings"]


def test_kauh_code_parsing():
    assert parse_sounds("I C E W") == [("inspiratory", "crackles"), ("expiratory", "wheezes")]
    assert parse_sounds("I C B") == [("inspiratory", "crackles"), (None, "bronchial breath sounds")]
    assert parse_sounds("Crep") == [(None, "crepitations")]
    assert parse_location("P L L") == {"surface": "posterior", "side": "left", "zone": "lower"}
    assert parse_location("P L R") == {"surface": "posterior", "zone": "lower", "side": "right"}
    assert parse_location("A U R") == {"surface": "anterior", "zone": "upper", "side": "right"}
    assert parse_diagnosis("Heart Failure + Lung Fibrosis ") == ["heart failure", "lung fibrosis"]
    assert parse_diagnosis("Plueral Effusion") == ["pleural effusion"]
    assert parse_name("BP47_asthma,E W,P L M,60,M.wav")["Age"] == "60"
    with pytest.raises(ValueError, match="unknown KAUH sound code"):
        parse_sounds("E X")


def test_zchsound_diagnosis_expanded(built):
    for r in built["zchsound"].rows:
        low = r["Gen_Report"].lower()
        d = r["diagnosis"].lower()
        if d == "normal":
            assert "normal" in low or "no congenital heart defect" in low
        else:
            assert d in low, (d, low)


def test_tr_severity_and_sprsound(built):
    for r in built["tr"].rows:
        assert r["Diagnosis"] in r["Gen_Report"]
        assert ("copd_severity", r["Diagnosis"]) in r["findings"]
    for r in built["sprsound"].rows:
        low = r["Gen_Report"].lower()
        if r["Record_Annotation"] == "Normal":
            assert not positive_mentions(low, "adventitious")
        else:
            assert positive_mentions(low, "adventitious"), low
        if r["Event_Type"] not in ("Normal", ""):
            ev = {"Fine Crackle": "fine crackles", "Coarse Crackle": "coarse crackles", "Wheeze": "wheezes",
                  "Rhonchi": "rhonchi", "Stridor": "stridor", "Wheeze+Crackle": "wheezes with crackles"}
            assert ev[r["Event_Type"]] in low


def test_hflung_bmd_coughvid_coswara(built):
    for r in built["hf-lung"].rows:
        low = r["Gen_Report"].lower()
        if r["label"] == "None":
            assert not positive_mentions(low, "wheez") and not positive_mentions(low, "rhonchi")
        elif r["label"] in ("Wheeze", "Rhonchi", "Stridor"):
            assert positive_mentions(low, r["label"].lower()[:5])
    for r in built["bmd"].rows:
        cls = r["recording"].split("_")[0]
        names = {"AS": "aortic stenosis", "AR": "aortic regurgitation", "MR": "mitral regurgitation",
                 "MS": "mitral stenosis"}
        if cls in names:
            assert positive_mentions(r["Gen_Report"].lower(), names[cls])
        if cls == "N":
            assert ("diagnosis", "normal") in r["findings"]
    for r in built["coughvid"].rows:
        if r["status"] == "COVID-19":
            assert "covid-19" in r["Gen_Report"].lower()
        if r["fever_muscle_pain"] == "True":
            assert positive_mentions(r["Gen_Report"].lower(), "fever")
    smokers = [r for r in built["coswara"].rows if r.get("smoker") == "yes"]
    assert smokers and all(("smoker", "yes") in r["findings"] for r in smokers)
    assert all(positive_mentions(r["Gen_Report"].lower(), "smok") for r in smokers)


# --------------------------------------------------------------------------- determinism and variety

def test_deterministic_and_seed_varies(shared_dir, built):
    paths = [shared_dir / "metadata" / p for p in SHIPPED["circor"]]
    again = build_reports("circor", paths, seed=0)
    assert [r["Gen_Report"] for r in again] == [r["Gen_Report"] for r in built["circor"].rows]
    other = build_reports("circor", paths, seed=1)
    changed = sum(a["Gen_Report"] != b["Gen_Report"] for a, b in zip(again, other))
    assert changed > len(again) // 3
    # findings do not depend on the seed, only the wording does
    assert all(a["findings"] == b["findings"] for a, b in zip(again, other))
    assert other[0]["provenance"] == "circor@1;seed=1"


def test_phrasing_variety(built):
    """The same findings are worded several ways: across records, and across seeds for one record."""
    for ds, res in built.items():
        groups: dict[str, set] = {}
        for r in res.rows:
            groups.setdefault(json.dumps(r["findings"]), set()).add(r["Gen_Report"])
        assert max(len(g) for g in groups.values()) >= 2, ds
        row = res.rows[0]
        texts = {report_for(ds, row, seed) for seed in range(12)}
        assert len(texts) >= 3, (ds, texts)
        assert {json.dumps(findings_of(ds, row, seed)) for seed in range(12)} == {json.dumps(row["findings"])}


# --------------------------------------------------------------------------- missing values, hand-made rows

def test_circor_unknown_and_nan():
    unknown = {"Patient ID": "1", "Murmur": "Unknown", "Outcome": "nan", "Age": "nan", "Sex": "Male"}
    text = report_for("circor", unknown)
    assert not positive_mentions(text, "murmur") and "undetermined" in text or "could not" in text
    assert findings_of("circor", unknown) == [("sex", "male"), ("murmur", "undetermined")]
    bare = {"Patient ID": "2", "Murmur": "Present", "Murmur locations": "nan", "Most audible location": "",
            "Systolic murmur timing": float("nan"), "Outcome": "Abnormal"}
    for seed in range(5):
        text = report_for("circor", bare, seed)
        assert positive_mentions(text, "murmur") and "nan" not in text
    assert findings_of("circor", bare) == [("murmur", "present"), ("outcome", "abnormal")]
    with pytest.raises(NothingToReport):
        report_for("circor", {"Patient ID": "3", "Murmur": "", "Outcome": "nan"})


def test_synthetic_extra_fields():
    circ = {"Patient ID": "s1", "Murmur": "Absent", "Outcome": "Normal", "Age": "Infant", "Recording location": "PV",
            "Heart rate": "196"}
    f = findings_of("synth-circor", circ)
    assert ("heart_rate", "196 bpm") in f and ("heart_rate_interpretation", "tachycardia") in f
    assert ("recording_location", "pulmonary valve") in f and "196 bpm (tachycardia)" in report_for("synth-circor", circ)
    cyc = {"Patient_ID": "7", "Recording_Index": "1b1", "Chest_Location": "Trachea", "Acquisition_Mode": "sc",
           "Equipment": "Meditron", "Crackles": "0", "Wheezes": "nan", "Age": "70", "Sex": "nan",
           "Diagnosis": "Pneumonia", "Respiratory_Rate": "28"}
    text = report_for("synth-icbhi", cyc)
    assert "28 breaths/min (tachypnoea)" in text and "wheez" not in text.lower()
    assert not positive_mentions(text, "crackle")
    assert ("sex", "male") not in findings_of("synth-icbhi", cyc) and ("crackles", "absent") in findings_of("icbhi-cycle", cyc)
    child = dict(cyc, Age="3", Respiratory_Rate="28")
    assert ("respiratory_rate_interpretation", "normal for age") in findings_of("synth-icbhi", child)
    cough = {"uuid": "u1", "age": "nan", "gender": "", "status": "COVID-19", "respiratory_condition": "nan",
             "fever_muscle_pain": "True", "cough_type": "wet"}
    text = report_for("synth-coughvid", cough)
    assert "wet" in text and "COVID-19" in text and positive_mentions(text.lower(), "fever")
    assert not any(k in ("age", "sex", "respiratory_condition") for k, _ in findings_of("coughvid", cough))
    with pytest.raises(NothingToReport):
        report_for("coughvid", {"uuid": "u2", "age": "30", "gender": "male", "status": "", "cough_type": "unknown"})
    rows = build_reports("synth-coughvid", records=[cough], seed=3)
    assert rows[0]["provenance"] == "coughvid@1;seed=3" and rows[0]["dataset"] == "synth-coughvid"


def test_coviduk_from_documented_columns(tmp_path):
    (tmp_path / "participant_metadata.csv").write_text(
        "participant_identifier,age,gender,smoker_status,symptom_none,symptom_cough_any,symptom_fatigue,"
        "respiratory_condition_asthma,covid_test_result\n"
        "P1,45-54,Female,Never smoked,0,1,1,1,Positive\nP2,,Male,,1,0,0,0,Negative\nP3,,,,,,,,\n")
    (tmp_path / "audio_metadata.csv").write_text(
        "participant_identifier,exhalation_file_name,exhalation_length,cough_file_name\n"
        "P1,a1.wav,3.2,c1.wav\nP2,a2.wav,2.0,\nP3,a3.wav,1.0,c3.wav\n")
    res = build_report_table("coviduk", [tmp_path / "participant_metadata.csv", tmp_path / "audio_metadata.csv"])
    ids = {r["record_id"]: r for r in res.rows}
    assert set(ids) == {"a1", "c1", "a2"} and len(res.skipped) == 2
    t = ids["c1"]["Gen_Report"]
    assert "positive" in t and "cough recording" in t.lower() and "fatigue" in t and "asthma" in t
    assert "negative" in ids["a2"]["Gen_Report"] and "no symptoms" in ids["a2"]["Gen_Report"].lower()
    assert ids["a2"]["subject_id"] == "P2"


# --------------------------------------------------------------------------- real layouts and errors

def test_real_layout_readers(tmp_path):
    # ICBHI: the database folder (annotation .txt per recording) plus the official tables.
    db = tmp_path / "icbhi"
    db.mkdir()
    (db / "101_1b1_Al_sc_Meditron.txt").write_text("0.036\t0.579\t0\t0\n0.579\t2.45\t1\t0\n")
    (db / "ICBHI_Challenge_diagnosis.txt").write_text("101\tURTI\n")
    (db / "ICBHI_Challenge_demographic_information.txt").write_text("101\t3\tF\tNA\t19\t99\r\n")
    cycles = build_reports("icbhi-cycle", [db])
    assert [r["record_id"] for r in cycles] == ["101_1b1_Al_sc_Meditron#0", "101_1b1_Al_sc_Meditron#1"]
    assert ("crackles", "present") in cycles[1]["findings"] and ("diagnosis", "upper respiratory tract infection") \
        in cycles[1]["findings"]
    rec = build_reports("icbhi", [db])[0]
    assert ("crackles_cycles", "1/2") in rec["findings"]
    # CirCor: PhysioNet patient file with a repeated location.
    cc = tmp_path / "circor"
    cc.mkdir()
    (cc / "50782.txt").write_text(
        "50782 3 4000\nAV 50782_AV_1.hea 50782_AV_1.wav 50782_AV_1.tsv\nAV 50782_AV_2.hea 50782_AV_2.wav "
        "50782_AV_2.tsv\nMV 50782_MV.hea 50782_MV.wav 50782_MV.tsv\n#Age: Child\n#Sex: Female\n#Murmur: Present\n"
        "#Murmur locations: MV\n#Most audible location: MV\n#Systolic murmur timing: Holosystolic\n"
        "#Systolic murmur grading: II/VI\n#Outcome: Abnormal\n")
    locs = build_reports("circor-location", [cc])
    assert [r["record_id"] for r in locs] == ["50782_AV_1", "50782_AV_2", "50782_MV"]
    assert ("murmur_at_recording_location", "not audible") in locs[0]["findings"]
    assert ("murmur_at_recording_location", "audible") in locs[2]["findings"]
    # SPRSound: JSON annotations + patient summary.
    sp = tmp_path / "spr"
    sp.mkdir()
    (sp / "65101170_0.4_1_p1_3246.json").write_text(json.dumps(
        {"recording_annotation": "DAS", "event_annotation": [{"start": 0, "end": 9, "type": "Fine Crackle"},
                                                             {"start": 9, "end": 19, "type": "Normal"}]}))
    (sp / "65101170_0.4_1_p2_3247.json").write_text(json.dumps({"record_annotation": "Poor Quality",
                                                                "event_annotation": []}))
    (sp / "SPRSound_patient_summary.csv").write_text("patient_num,age,gender,disease\n65101170,0.4,1,Asthma\n")
    res = build_report_table("sprsound", [sp])
    (row,) = res.rows
    assert res.skipped == [("65101170_0.4_1_p2_3247", "poor-quality recording")]
    assert "5-month-old female" in row["Gen_Report"] and "left posterior" in row["Gen_Report"]
    assert "fine crackles" in row["Gen_Report"] and "asthma" in row["Gen_Report"]
    # ZCHSound: the ';'-separated details files.
    z = tmp_path / "Noise Heartsound Data Details.csv"
    z.write_text("fileName;gender;age(days);diagnosis\nZCH1163.wav;M;2;ASD\n")
    (row,) = build_reports("zchsound", [z])
    assert "atrial septal defect" in row["Gen_Report"] and ("recording_quality", "noisy") in row["findings"]
    assert ("age", "2 days") in row["findings"] and row["record_id"] == "ZCH1163"
    # KAUH: the wav files themselves; TR: wav files plus Labels.csv (with its BOM); Coswara combined_data.
    kd = tmp_path / "kauh"
    kd.mkdir()
    (kd / "EP2_Heart Failure + COPD,I C E W,P L L R,52,F.wav").write_bytes(b"")
    (row,) = build_reports("kauh", [kd])
    assert "heart failure and COPD" in row["Gen_Report"] and row["subject_id"] == "2"
    td = tmp_path / "tr"
    td.mkdir()
    (td / "H002_L1.wav").write_bytes(b"")
    (td / "Labels.csv").write_bytes("\ufeffPatient ID,Diagnosis,\r\nH002,COPD4,\r\n".encode("utf-8"))
    (row,) = build_reports("tr", [td])
    assert row["record_id"] == "H002_L1" and "COPD4" in row["Gen_Report"] and "left" in row["Gen_Report"]
    cw = tmp_path / "combined_data.csv"
    cw.write_text("id,a,covid_status,g,smoker\nX1,34,healthy,female,True\nX2,,healthy,pnts,\n")
    rows = build_reports("coswara", [cw])
    assert ("smoker", "yes") in rows[0]["findings"] and ("age", "34 years") in rows[0]["findings"]
    assert len(rows) == 1  # X2: gender 'pnts' (prefer not to say) and no smoker or age -> nothing to report


def test_missing_column_and_bad_input_errors(tmp_path):
    bad = tmp_path / "training_data.csv"
    bad.write_text("Patient,Murmur locations,Outcome\n1,AV,Normal\n")
    with pytest.raises(ReportInputError, match=r"training_data.csv: not a recognised CirCor metadata file \(columns: Patient,"):
        build_reports("circor", [bad])
    bad.write_text("Patient ID,Age,Outcome\n1,Child,Normal\n")
    with pytest.raises(ReportInputError, match=rf"{re.escape(str(bad))}: missing column\(s\) 'Murmur'"):
        build_reports("circor", [bad])
    cv = tmp_path / "metadata_compiled.csv"
    cv.write_text("uuid,age,gender\nu,1,male\n")
    with pytest.raises(ReportInputError, match=r"metadata_compiled.csv: missing column\(s\) 'status'"):
        build_reports("coughvid", [cv])
    cyc = tmp_path / "cycles.csv"
    cyc.write_text("Patient_ID,Recording_Index,Chest_Location,Acquisition_Mode,Equipment,Crackles\n1,1b1,Tc,sc,Meditron,0\n")
    with pytest.raises(ReportInputError, match=r"cycles.csv: missing column\(s\) 'Wheezes'"):
        build_reports("icbhi-cycle", [cyc])
    with pytest.raises(ReportInputError, match=r"record 0: missing field\(s\) 'Murmur'"):
        build_reports("circor", records=[{"Patient ID": "1"}])
    with pytest.raises(ReportInputError, match="no such file"):
        build_reports("kauh", [tmp_path / "absent.csv"])
    with pytest.raises(ReportInputError, match="not COPD0..COPD4"):
        report_for("tr", {"Patient_ID": "H1", "Diagnosis": "asthma"})
    with pytest.raises(ValueError, match="exactly one"):
        build_reports("circor")


def test_write_csv_and_cli(tmp_path, shared_dir, capsys):
    out = tmp_path / "r.csv"
    parser = argparse.ArgumentParser(prog="acula")
    register_cli(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["reports", "build", "--dataset", "coughvid", "--metadata",
                              str(shared_dir / "metadata" / "coughvid" / "metadata_compiled.csv"), "--out", str(out),
                              "--seed", "2"])
    assert args.func(args) == 0
    line = capsys.readouterr().out
    assert re.search(r"11564 reports written, 8508 rows skipped \(8508 no status, symptoms or cough type\)", line)
    rows = list(csv.DictReader(open(out, encoding="utf-8")))
    assert len(rows) == 11564 and list(rows[0])[:6] == ["record_id", "subject_id", "dataset", "Gen_Report",
                                                         "provenance", "findings"]
    assert rows[0]["provenance"] == "coughvid@1;seed=2" and json.loads(rows[0]["findings"])
    assert "uuid" in rows[0] and "status" in rows[0]
    assert not list(tmp_path.glob(".r.csv.*"))  # atomic write left no temp file
    write_reports_csv(build_reports("tr", records=[{"Patient_ID": "H1", "Diagnosis": "COPD2"}]), out)
    assert "COPD2" in out.read_text()
    # bad input: a one-line error naming the file, exit status 2, nothing written
    bad = tmp_path / "odd.csv"
    bad.write_text("a,b\n1,2\n")
    args = parser.parse_args(["reports", "build", "--dataset", "kauh", "--metadata", str(bad), "--out",
                              str(tmp_path / "none.csv")])
    assert args.func(args) == 2
    assert "odd.csv: not a recognised KAUH metadata file" in capsys.readouterr().err
    assert not (tmp_path / "none.csv").exists()


def test_synthetic_corpus_rows():
    """The synthetic generator's manifest rows go straight into the builders (its record/subject ids kept)."""
    synthetic = pytest.importorskip("acula.data.synthetic")
    recs = synthetic.generate(2, 2, 2, seed=0)
    by: dict[str, list] = {}
    for r in recs:
        by.setdefault(r.meta["dataset"], []).append(dict(r.meta))
    assert set(by) == {"synth-circor", "synth-icbhi", "synth-coughvid"}
    for ds, metas in by.items():
        res = build_report_table(ds, records=metas)
        assert len(res.rows) == len(metas) and not res.skipped
        for row, meta in zip(res.rows, metas):
            assert (row["record_id"], row["subject_id"]) == (meta["record_id"], meta["subject_id"])
            keys = {k for k, _ in row["findings"]}
            if ds == "synth-circor":
                assert {"heart_rate", "recording_location"} <= keys
            if ds == "synth-icbhi":
                assert "respiratory_rate" in keys and "cycle" not in row["Gen_Report"]


@pytest.mark.parametrize("x, digits, text", [(139.5, 0, "140"), (100.0, 0, "100"), (89.9, 0, "90"), (66.0, 2, "66"),
                                             (0.75, 2, "0.75"), (15.90, 1, "15.9"), (20.0, 1, "20"), (-0.2, 0, "0")])
def test_numbers_are_rounded_not_truncated(x, digits, text):
    from acula.text.reports._base import fmt_num

    assert fmt_num(x, digits) == text  # 139.5 bpm once read "14 bpm" in a report


def test_fixed_phrasing_states_the_same_findings_in_one_wording(shared_dir):
    """--phrasing fixed: the same findings give the same text, and each report states what the varied one does."""
    paths = [shared_dir / "metadata" / p for p in SHIPPED["circor-location"]]
    varied = build_report_table("circor-location", paths, seed=0)
    fixed = build_report_table("circor-location", paths, seed=0, phrasing="fixed")
    assert [r["record_id"] for r in fixed.rows] == [r["record_id"] for r in varied.rows]
    by_findings: dict = {}
    for v, f in zip(varied.rows, fixed.rows):
        assert sorted(f["findings"]) == sorted(v["findings"]), f["record_id"]
        assert f["provenance"].endswith(";phrasing=fixed")
        by_findings.setdefault(tuple(sorted(f["findings"])), set()).add(f["Gen_Report"])
    assert all(len(texts) == 1 for texts in by_findings.values())
    assert len({r["Gen_Report"] for r in fixed.rows}) < len({r["Gen_Report"] for r in varied.rows})
    with pytest.raises(ValueError, match="phrasing"):
        build_report_table("circor-location", paths, phrasing="random")
