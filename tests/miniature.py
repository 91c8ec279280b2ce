"""Miniature copies of the benchmark datasets' download layouts (SPEC §6), for tests.

Real audio cannot be downloaded here, so every builder writes short generated WAVs (tones in noise,
0.5-2 s, at the datasets' native-ish sample rates) into the real folder structure, next to the real
metadata files of `shared/metadata` (subsetted) where they exist and synthetic files named like the real
ones where they do not (UK COVID-19 tables, MMLung's All_path.xlsx, split lists). Each builder returns
what it chose, so tests can check the loaders against it.
"""

from __future__ import annotations

import csv
import shutil
import zipfile
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
import soundfile as sf

PARTS = ("train", "val", "test")


def write_wav(path: Path, seconds: float = 1.0, sr: int = 16000, seed: int = 0) -> Path:
    """A tone in noise, never silent, so every loader/trim step has signal to work with."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    wave = 0.3 * np.sin(2 * np.pi * rng.uniform(100, 900) * t) + 0.05 * rng.standard_normal(t.size)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, wave.astype(np.float32), sr, subtype="PCM_16")
    return path


def write_csv(path: Path, rows: list[dict], columns: list[str] | None = None, sep: str = ",") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = columns or list(rows[0])
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=columns, delimiter=sep, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    return path


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8-sig") as f:
        return list(csv.DictReader(f))


def save_object_list(path: Path, values: list[str]) -> Path:
    """Like the shipped OPERA lists (pandas `.values`): an object-dtype .npy, i.e. pickled."""
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, np.array(values, dtype=object), allow_pickle=True)
    return path


def write_xlsx(path: Path, header: list[str], rows: list[list]) -> Path:
    """A minimal one-sheet .xlsx (shared strings for text, numbers inline), as pandas.to_excel would make."""
    strings: list[str] = []

    def cell(ref: str, v) -> str:
        if v is None or v == "":
            return ""
        if isinstance(v, (int, float)):
            return f'<c r="{ref}"><v>{v}</v></c>'
        strings.append(str(v))
        return f'<c r="{ref}" t="s"><v>{len(strings) - 1}</v></c>'

    def col(i: int) -> str:
        s = ""
        i += 1
        while i:
            i, r = divmod(i - 1, 26)
            s = chr(65 + r) + s
        return s

    body = []
    for r, values in enumerate([header] + rows, start=1):
        body.append(f'<row r="{r}">' + "".join(cell(f"{col(c)}{r}", v) for c, v in enumerate(values)) + "</row>")
    ns = 'xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"'
    rel = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
    files = {
        "[Content_Types].xml": '<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
        '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
        '<Default Extension="xml" ContentType="application/xml"/>'
        '<Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
        '<Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>'
        '<Override PartName="/xl/sharedStrings.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"/>'
        "</Types>",
        "_rels/.rels": f'<?xml version="1.0"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
        f'<Relationship Id="rId1" Type="{rel}/officeDocument" Target="xl/workbook.xml"/></Relationships>',
        "xl/workbook.xml": f'<?xml version="1.0"?><workbook {ns} xmlns:r="{rel}"><sheets>'
        '<sheet name="Sheet1" sheetId="1" r:id="rId1"/></sheets></workbook>',
        "xl/_rels/workbook.xml.rels": f'<?xml version="1.0"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
        f'<Relationship Id="rId1" Type="{rel}/worksheet" Target="worksheets/sheet1.xml"/>'
        f'<Relationship Id="rId2" Type="{rel}/sharedStrings" Target="sharedStrings.xml"/></Relationships>',
        "xl/worksheets/sheet1.xml": f'<?xml version="1.0"?><worksheet {ns}><sheetData>{"".join(body)}</sheetData></worksheet>',
    }
    files["xl/sharedStrings.xml"] = (f'<?xml version="1.0"?><sst {ns} count="{len(strings)}">'
                                     + "".join(f"<si><t>{escape(s)}</t></si>" for s in strings) + "</sst>")
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as z:
        for name, text in files.items():
            z.writestr(name, text)
    return path


# --------------------------------------------------------------------------------------------------------
# respiratory (OPERA tasks)


def build_icbhi(root: Path, meta: Path) -> dict:
    """5 healthy + 5 COPD training patients, 2 + 2 test patients, overlap patient 156, one URTI patient."""
    d = root / "icbhi"
    d.mkdir(parents=True)
    for name in ("ICBHI_Challenge_diagnosis.txt", "ICBHI_challenge_train_test.txt",
                 "ICBHI_Challenge_demographic_information.txt"):
        (d / name).write_bytes((meta / "icbhi" / name).read_bytes())
    diag = dict(line.split() for line in (d / "ICBHI_Challenge_diagnosis.txt").read_text().splitlines() if line.strip())
    official = [line.split() for line in (d / "ICBHI_challenge_train_test.txt").read_text().splitlines() if line.strip()]
    want = {("train", "Healthy"): 5, ("train", "COPD"): 5, ("test", "Healthy"): 2, ("test", "COPD"): 2,
            ("train", "URTI"): 1}
    chosen, patients = [], set()
    for rec, part in official:
        pid = rec.split("_")[0]
        key = (part, diag[pid])
        if pid in ("156", "218") or pid in patients or want.get(key, 0) == 0:
            continue
        want[key] -= 1
        patients.add(pid)
        chosen.append((rec, part, diag[pid]))
    overlap = [r for r in official if r[0].startswith("156_")]
    chosen += [next((r, p, "COPD") for r, p in overlap if p == "train"), next((r, p, "COPD") for r, p in overlap if p == "test")]
    for i, (rec, _, _) in enumerate(chosen):
        write_wav(d / "ICBHI_final_database" / f"{rec}.wav", seconds=1.5, sr=4000, seed=100 + i)
        (d / "ICBHI_final_database" / f"{rec}.txt").write_text("0.1\t1.2\t0\t0\n")
    return {"chosen": chosen}


def build_kauh(root: Path, meta: Path) -> dict:
    """7 healthy and 7 obstructive subjects (one with two filter variants), plus files the rule drops."""
    rows = read_csv(meta / "kauh" / "metadata.csv")
    picked: dict[str, list[str]] = {}
    counts = {"N": 0, "obstructive": 0}
    for r in rows:
        name, sid = r["File_Name"], r["ID"][2:]
        diag = name.split(",")[0].split("_")[-1]
        kind = "N" if diag == "N" else "obstructive" if ("asthma" in diag.lower() or "COPD" in diag) else None
        if kind and counts[kind] < 7 and sid not in picked:
            counts[kind] += 1
            picked[sid] = [name]
    # a second filter variant of one picked subject, and two files the published rule leaves out
    variant = next(r["File_Name"] for r in rows if r["ID"][2:] in picked and r["File_Name"] not in picked[r["ID"][2:]])
    heart_failure = next(r["File_Name"] for r in rows if r["File_Name"].split(",")[0].split("_")[-1] == "heart failure")
    dropped = [heart_failure, next(r["File_Name"] for r in rows if "_copd," in r["File_Name"])]
    files = [n for names in picked.values() for n in names] + [variant] + dropped
    for i, name in enumerate(files):
        write_wav(root / "KAUH" / "AudioFiles" / name, seconds=1.0, sr=4000, seed=200 + i)
    return {"subjects": sorted(picked), "variant": variant, "dropped": dropped}


def build_copd_tr(root: Path, meta: Path) -> dict:
    """The real Labels.csv (BOM, CRLF) cut to 6 patients per severity, one channel each (two for two patients)."""
    d = root / "copd"
    d.mkdir(parents=True)
    text = (meta / "respiratorydatabase-tr" / "Labels.csv").read_text(encoding="utf-8-sig")
    lines, per_class = text.splitlines(), {}
    kept = [lines[0]]
    for ln in lines[1:]:
        severity = ln.split(",")[1]
        per_class[severity] = per_class.get(severity, 0) + 1
        if per_class[severity] <= 6:
            kept.append(ln)
    (d / "Labels.csv").write_text("\ufeff" + "\r\n".join(kept) + "\r\n", encoding="utf-8")
    pids = [r["Patient ID"] for r in read_csv(d / "Labels.csv")]
    files = [f"{p}_L1.wav" for p in pids] + [f"{p}_R3.wav" for p in pids[:2]]
    for i, name in enumerate(files):
        write_wav(d / "RespiratoryDatabase@TR" / name, seconds=0.8, sr=4000, seed=300 + i)
    return {"patients": pids, "files": files}


def build_coughvid(root: Path, meta: Path, with_lists: bool = True) -> dict:
    """20 real metadata rows (healthy/COVID x female/male, symptomatic); one wav lost its last uuid char."""
    rows = [r for r in read_csv(meta / "coughvid" / "metadata_compiled.csv") if float(r["cough_detected"] or 0) >= 0.8]
    quota = {("healthy", "female"): 5, ("healthy", "male"): 5, ("COVID-19", "female"): 4, ("COVID-19", "male"): 4,
             ("symptomatic", "male"): 2}
    chosen = []
    for r in rows:
        key = (r["status"], r["gender"])
        if quota.get(key, 0) > 0:
            quota[key] -= 1
            chosen.append(r)
    d = root / "coughvid"
    write_csv(d / "metadata_compiled.csv", chosen, list(rows[0]))
    for i, r in enumerate(chosen):
        name = r["uuid"][:-1] if i == 0 else r["uuid"]  # OPERA's uuid[:-1] fallback
        write_wav(d / "wav" / f"{name}.wav", seconds=1.0, sr=48000, seed=400 + i)
    parts = {p: [] for p in PARTS}
    by_group: dict[tuple, list[str]] = {}
    for r in chosen:
        by_group.setdefault((r["status"], r["gender"]), []).append(r["uuid"])
    for uuids in by_group.values():  # every (status, gender) group spread over the three parts
        for j, u in enumerate(uuids):
            parts[PARTS[j % 3] if j < 3 else "train"].append(u)
    if with_lists:
        for p, name in zip(PARTS, ("coughvid__train_uuids.npy", "coughvid__val_uuids.npy",
                                   "coughvid_gender_test_uuids.npy")):
            save_object_list(d / name, parts[p])
    return {"rows": chosen, "parts": parts, "truncated": chosen[0]["uuid"]}


def build_coviduk(root: Path) -> dict:
    """15 synthetic participants (exhalation + cough each) and one untested; shipped lists for exhalation only."""
    rng = np.random.default_rng(5)
    d = root / "covidUK"
    audio_rows, people, splits = [], [], []
    for i in range(15):
        pid = f"P{i:04d}"
        result = "Positive" if i % 2 else "Negative"
        part = PARTS[i % 5] if i % 5 < 3 else "train"
        audio_rows.append({"participant_identifier": pid, "exhalation_file_name": f"{pid}_exhalation.wav",
                           "exhalation_size": 1, "exhalation_length": 1.0, "exhalation_sample_rate": 48000,
                           "three_cough_file_name": f"{pid}_three_cough.wav", "three_cough_size": 1,
                           "three_cough_length": 1.0, "three_cough_sample_rate": 48000,
                           "cough_file_name": f"{pid}_cough.wav", "cough_length": 1.0})
        people.append({"participant_identifier": pid, "covid_test_result": result, "age": int(rng.integers(18, 80))})
        splits.append({"participant_identifier": pid, "splits": part})
    people.append({"participant_identifier": "P9999", "covid_test_result": "Unknown", "age": 40})
    audio_rows.append({**audio_rows[0], "participant_identifier": "P9999",
                       "exhalation_file_name": "P9999_exhalation.wav", "cough_file_name": "P9999_cough.wav"})
    write_csv(d / "audio_metadata.csv", audio_rows)
    write_csv(d / "participant_metadata.csv", people)
    write_csv(d / "train_test_splits.csv", splits)
    for i, r in enumerate(audio_rows):
        for col in ("exhalation_file_name", "cough_file_name"):
            write_wav(d / "audio_selected" / r[col], seconds=1.0, sr=16000, seed=500 + 2 * i + (col[0] == "c"))
    lists = {p: [r["exhalation_file_name"] for r, s in zip(audio_rows, splits) if s["splits"] == p] for p in PARTS}
    for p, name in zip(PARTS, ("training", "val", "testing")):
        save_object_list(d / f"exhalation_{name}_files_downsample.npy", lists[p])
    return {"splits": {s["participant_identifier"]: s["splits"] for s in splits}, "exhalation_lists": lists}


def build_coswara(root: Path, meta: Path) -> dict:
    """16 real participant ids (balanced smoker and sex) + one known-bad uuid, one bad-quality cough,
    one missing cough-heavy file; a google smoker split in the shipped format, none for sex."""
    smoker = {r["id"]: r["smoker"] for r in read_csv(meta / "coswara" / "smoker_classification.csv")}
    gender = {r["id"]: r["gender"] for r in read_csv(meta / "coswara" / "gender_classification.csv")}
    quota = {(s, g): 4 for s in ("yes", "no") for g in ("male", "female")}
    ids = []
    for uid, s in smoker.items():
        key = (s, gender.get(uid))
        if quota.get(key, 0) > 0:
            quota[key] -= 1
            ids.append(uid)
    extra = [u for u in smoker if u not in ids and gender.get(u) in ("male", "female")][:2]  # bad quality, no heavy
    bad = "C7Km0KttQRMMM6UoyocajfgZAOB3"
    d = root / "Coswara-Data"
    spell = {"yes": ("y", "True"), "no": ("n", "FALSE")}
    rows = [{"id": u, "a": 30 + i, "g": gender[u], "smoker": spell[smoker[u]][i % 2]} for i, u in enumerate(ids + extra)]
    rows.insert(3, {"id": bad, "a": 40, "g": "male", "smoker": "y"})
    write_csv(d / "combined_data.csv", rows)
    for m in ("cough-heavy", "cough-shallow"):
        quality = [{"FILENAME": f"{r['id']}_{m}", "QUALITY": "0" if (r["id"] == extra[0] and m == "cough-heavy") else "2"}
                   for r in rows]
        write_csv(d / "annotations" / f"{m}_labels.csv", quality)
    for i, r in enumerate(rows):
        folder = d / "Extracted_data" / f"2020{4 + i % 3:02d}{10 + i:02d}" / r["id"]
        write_wav(folder / "cough-shallow.wav", seconds=1.0, sr=48000, seed=600 + i)
        if r["id"] != extra[1]:
            write_wav(folder / "cough-heavy.wav", seconds=0.5, sr=48000, seed=700 + i)
    # google split over the qualifying participants in combined_data order (ids): 2 + 2 test
    test = [u for u in ids if smoker[u] == "yes"][:2] + [u for u in ids if smoker[u] == "no"][:2]
    save_object_list(d / "google_smoker_cough_split.npy", ["test" if u in test else "train" for u in ids])
    return {"ids": ids, "bad": bad, "excluded": extra, "smoker_test": test, "smoker": smoker, "gender": gender}


def build_mmlung(root: Path, n: int = 6) -> dict:
    """n participants with spirometry targets in All_path.xlsx; participant 3 lacks its vowel recording."""
    rng = np.random.default_rng(7)
    d = root / "mmlung"
    rows, targets = [], {}
    for i in range(1, n + 1):
        fvc, fev1 = round(float(rng.uniform(2.5, 5.0)), 2), round(float(rng.uniform(2.0, 4.0)), 2)
        ratio = round(fev1 / fvc * 100, 1)
        vowel = "" if i == 3 else f"./Trimmed Data from phone/5_2_O_single/{i}_vowelo.wav"
        breath = f"./Trimmed Data from phone/9_3_deepbreath/{i}_deepbreaths.wav"
        rows.append([i - 1, f"./spirometry_ground_truth/{i}_spiro.xls", vowel, breath, fvc, fev1, ratio])
        targets[str(i)] = (fvc, fev1, ratio)
        (d / "spirometry_ground_truth").mkdir(parents=True, exist_ok=True)
        (d / "spirometry_ground_truth" / f"{i}_spiro.xls").write_bytes(b"")
        for rel in (vowel, breath):
            if rel:
                write_wav(d / rel[2:], seconds=1.2, sr=44100, seed=800 + 2 * i + (rel == breath))
    write_xlsx(d / "All_path.xlsx", ["", "Spirometry_file", "O_Single_file", "Deep_Breath_file", "FVC", "FEV1",
                                     "FEV1/FVC"], rows)
    return {"targets": targets}


def build_nosemic(root: Path) -> dict:
    """4 subjects x 2 recordings named {uid}_{x}_{y}_{rr}.wav."""
    rates = {}
    for i, uid in enumerate(("4", "5", "11", "17")):
        for j in range(2):
            rr = 12.0 + i + 2.5 * j
            name = f"{uid}_{j}_sit_{rr}.wav"
            rates[name] = (uid, rr)
            write_wav(root / "nosemic" / "audio" / name, seconds=1.0, sr=16000, seed=900 + 2 * i + j)
    return {"rates": rates}


# --------------------------------------------------------------------------------------------------------
# cardiac


def build_circor(root: Path, meta: Path) -> dict:
    """14 real patients (murmur Absent / Present with either outcome, 2 Unknown), 1-2 locations each, PhysioNet
    .txt per patient."""
    rows = read_csv(meta / "circor" / "training_data.csv")
    quota = {("Absent", "Normal"): 4, ("Absent", "Abnormal"): 2, ("Present", "Normal"): 2, ("Present", "Abnormal"): 4,
             ("Unknown", "Normal"): 1, ("Unknown", "Abnormal"): 1}
    chosen = []
    for r in rows:
        if quota.get((r["Murmur"], r["Outcome"]), 0) > 0:
            quota[r["Murmur"], r["Outcome"]] -= 1
            chosen.append(r)
    td = root / "circor" / "training_data"
    for i, r in enumerate(chosen):
        pid = r["Patient ID"]
        locs = list(dict.fromkeys(r["Recording locations:"].split("+")))[: 1 + i % 2]
        lines = [f"{pid} {len(locs)} 4000"] + [f"{loc} {pid}_{loc}.hea {pid}_{loc}.wav {pid}_{loc}.tsv" for loc in locs]
        lines += [f"#Age: {r['Age']}", f"#Sex: {r['Sex']}", f"#Murmur: {r['Murmur']}",
                  f"#Murmur locations: {r['Murmur locations']}", f"#Outcome: {r['Outcome']}"]
        td.mkdir(parents=True, exist_ok=True)
        (td / f"{pid}.txt").write_text("\n".join(lines) + "\n")
        for j, loc in enumerate(locs):
            write_wav(td / f"{pid}_{loc}.wav", seconds=1.5, sr=4000, seed=1000 + 3 * i + j)
    return {"chosen": chosen}


ZCH_ABBR = {"Normal": "NORMAL", "Atrial septal defect": "ASD", "Patent ductus arteriosus": "PDA",
            "Patent foramen ovale": "PFO", "Ventricular septal defect": "VSD"}


def build_zchsound(root: Path, meta: Path) -> dict:
    """8 normal + 8 defect recordings from the real table, as the two ';'-separated Details CSVs."""
    rows = read_csv(meta / "zchsound" / "metadata.csv")
    quota = {("normal", "Clean"): 5, ("normal", "Noise"): 3, ("defect", "Clean"): 5, ("defect", "Noise"): 3}
    chosen = []
    for r in rows:
        key = ("normal" if r["diagnosis"] == "Normal" else "defect", r["Data_Type"])
        if quota.get(key, 0) > 0:
            quota[key] -= 1
            chosen.append(r)
    d = root / "ZCHSound"
    for subset, table in (("Clean", "Clean Heartsound Data Details.csv"), ("Noise", "Noise Heartsound Data Details.csv")):
        write_csv(d / table, [{"fileName": r["fileName"], "gender": "M", "age(days)": 400,
                               "diagnosis": ZCH_ABBR[r["diagnosis"]]} for r in chosen if r["Data_Type"] == subset],
                  ["fileName", "gender", "age(days)", "diagnosis"], sep=";")
    for i, r in enumerate(chosen):
        write_wav(d / r["fileName"], seconds=1.5, sr=4000, seed=1100 + i)
    return {"chosen": chosen}


def build_sprsound(root: Path, meta: Path) -> dict:
    """One real annotation (JSON, verbatim) per chosen child, 8 children per record label and 6 control children,
    in the release's naming; the audio is a synthetic 1.5-s FLAC (the format users convert to); the AcuLa
    diagnosis table of these children beside it."""
    release = meta.parent / "data" / "sprsound"
    diagnosis = {r["Patient_Num"]: r["disease"] for r in read_csv(meta / "sprsound" / "metadata_train.csv")}
    quota = {"Normal": 8, "CAS": 8, "DAS": 8, "CAS & DAS": 8, "control": 6}
    chosen, seen = [], set()
    for r in read_csv(release / "metadata.csv"):
        pid, label = r["subject_id"], r["record_annotation"]
        key = "control" if label == "Normal" and diagnosis.get(pid) == "Control Group" else label
        if pid in seen or pid not in diagnosis or quota.get(key, 0) <= 0:
            continue
        quota[key] -= 1
        seen.add(pid)
        chosen.append(r)
    d = root / "sprsound" / "train"
    for i, r in enumerate(chosen):
        d.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(release / r["annotation_path"], d / f"{r['recording_id']}.json")
        write_wav(d / f"{r['recording_id']}.flac", seconds=1.5, sr=8000, seed=1200 + i)
    write_csv(root / "sprsound" / "metadata_train.csv",
              [{"Patient_Num": r["subject_id"], "Record_Annotation": r["record_annotation"], "Event_Type": "Normal",
                "disease": diagnosis[r["subject_id"]]} for r in chosen])
    return {"chosen": chosen, "diagnosis": {r["subject_id"]: diagnosis[r["subject_id"]] for r in chosen}}


def build_yaseen(root: Path) -> dict:
    """6 short synthetic clips per valve label, in the release's labels.csv layout (WAV for MR/MS, FLAC else)."""
    rows = []
    for k, label in enumerate(("MR", "MS", "MVP", "N")):
        for i in range(6):
            name = f"{label}/New_{label}_{i:03d}.{'wav' if label in ('MR', 'MS') else 'flac'}"
            write_wav(root / "heart-yaseen" / name, seconds=1.5, sr=8000, seed=1300 + 10 * k + i)
            rows.append({"path": name, "label": label})
    write_csv(root / "heart-yaseen" / "labels.csv", rows)
    return {"rows": rows}


def build_all(root: Path, meta: Path) -> dict:
    """Every dataset's miniature under one data root."""
    return {
        "icbhi": build_icbhi(root, meta), "kauh": build_kauh(root, meta), "copd": build_copd_tr(root, meta),
        "coughvid": build_coughvid(root, meta), "coviduk": build_coviduk(root), "coswara": build_coswara(root, meta),
        "mmlung": build_mmlung(root), "nosemic": build_nosemic(root), "circor": build_circor(root, meta),
        "zchsound": build_zchsound(root, meta), "sprsound": build_sprsound(root, meta),
        "yaseen": build_yaseen(root),
    }
