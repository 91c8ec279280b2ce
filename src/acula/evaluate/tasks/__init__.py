"""Downstream task registry: the OPERA benchmark (docs/protocol.md#tasks), two cardiac tasks, and CSV-defined tasks.

    from acula.evaluate.tasks import get_task, resolve_tasks
    data = get_task("T7").load("/data")        # TaskData: paths, labels, subjects, split / folds
    tasks = resolve_tasks("T1,T7,circor-murmur")

Ids follow OPERA's `scripts/eval_all.sh` (T3, T4 and T12 need datasets available on request only and
are not included, as in AcuLa's `linear_eval.py`).
"""

from __future__ import annotations

from . import cardiac, opera, sprsound
from .base import InputPolicy, Task, TaskData, TaskError
from .custom import csv_task, read_task_csv

__all__ = ["InputPolicy", "Task", "TaskData", "TaskError", "TASKS", "csv_task", "get_task", "list_tasks",
           "read_task_csv", "register_task", "resolve_tasks"]

TASKS: dict[str, Task] = {}


def register_task(task: Task) -> Task:
    if task.id in TASKS or any(t.name == task.name for t in TASKS.values()):
        raise ValueError(f"task {task.id} / {task.name} is already registered")
    TASKS[task.id] = task
    return task


def list_tasks() -> list[Task]:
    return list(TASKS.values())


def get_task(key: str) -> Task:
    """By id (T7) or name (icbhi-copd), case-insensitive."""
    k = key.strip().lower()
    for t in TASKS.values():
        if k in (t.id.lower(), t.name.lower()):
            return t
    raise KeyError(f"unknown task {key!r}; known: {', '.join(t.id for t in TASKS.values())} (or 'all')")


def resolve_tasks(spec: str) -> list[Task]:
    """"T1,T7" / "all" / names -> tasks, in the order given, without duplicates."""
    keys = [k for k in spec.split(",") if k.strip()]
    if any(k.strip().lower() == "all" for k in keys):
        return list_tasks()
    out: list[Task] = []
    for k in keys:
        t = get_task(k)
        if t not in out:
            out.append(t)
    return out


# Zero-shot prompt sets: one text per class index, worded unlike the reports.
PROMPTS = {
    "circor-murmur": (("no murmur", "heart murmur"),
                      ("Normal heart sounds without a murmur.", "A systolic heart murmur is heard."),
                      ("Clean S1 and S2, nothing between them.", "Turbulent flow: a murmur between the heart sounds.")),
    "circor-outcome": (("normal outcome", "abnormal outcome"),
                       ("The cardiologist found the heart normal.", "The cardiologist found heart disease."),
                       ("Healthy heart.", "Structural heart disease.")),
    "sprsound-adventitious": (("normal breath sounds", "adventitious lung sounds"),
                              ("Clear lungs on auscultation.", "Wheezes or crackles on auscultation."),
                              ("Vesicular breathing only.", "Added sounds over the lungs.")),
    "sprsound-4class": (("normal breath sounds", "wheezes", "crackles", "wheezes and crackles"),
                        ("Clear lungs.", "Continuous musical sounds: wheeze, rhonchi or stridor.",
                         "Discontinuous popping sounds: crackles.", "Both wheezes and crackles are heard."),
                        ("No adventitious sounds.", "Continuous adventitious sounds.",
                         "Discontinuous adventitious sounds.", "Continuous and discontinuous adventitious sounds.")),
    # the prompt sets of the real-heart experiment; class order MR, MS, MVP, N as in YASEEN_4CLASS
    "yaseen-4class": (("mitral regurgitation", "mitral stenosis", "mitral valve prolapse", "normal heart"),
                      ("Heart sounds of a patient with mitral regurgitation.", "Heart sounds of a patient with "
                       "mitral stenosis.", "Heart sounds of a patient with mitral valve prolapse.",
                       "Heart sounds of a healthy person."),
                      ("holosystolic blowing murmur at the apex radiating to the axilla", "low-pitched diastolic "
                       "rumble with an opening snap", "mid-systolic click and late systolic murmur",
                       "normal S1 and S2, no murmur"),
                      ("A leaking mitral valve.", "A narrowed mitral valve.", "A floppy mitral valve that bulges "
                       "into the atrium.", "A healthy heart with normal valves."),
                      ("Auscultation: systolic murmur of mitral regurgitation.", "Auscultation: diastolic murmur of "
                       "mitral stenosis.", "Auscultation: click of mitral valve prolapse.",
                       "Auscultation: normal heart sounds.")),
    "yaseen-abnormal": (("normal heart", "heart valve disease"), ("Heart sounds of a healthy person.",
                        "Heart sounds of a patient with mitral valve disease."),
                        ("normal S1 and S2, no murmur", "a murmur, click or opening snap of a diseased mitral valve")),
    "sprsound-disease": (("healthy child", "pneumonia"),
                         ("A child without lung disease.", "A child with pneumonia."),
                         ("Control group.", "Community-acquired pneumonia.")),
}


def _register_builtin() -> None:
    cls = dict(kind="classification")
    reg = dict(kind="regression", batch_size=64)
    uk = "official participant-level lists, downsampled: train 1000 / val 500 / test 1000 files"
    for tid, mod in (("T1", "exhalation"), ("T2", "cough")):
        register_task(Task(tid, f"coviduk-{mod}", "UK COVID-19", mod, target="COVID-19 test Negative 0 / Positive 1",
                           protocol=uk, loader=opera.coviduk(mod),
                           label_map=opera.COVIDUK_LABELS, **cls))
    cv = "shipped uuid lists: train / val, test = the gender-balanced test uuids"
    register_task(Task("T5", "coughvid-covid", "CoughVID", "cough", target="status healthy 0 / COVID-19 1",
                       protocol=cv, loader=opera.coughvid("covid"),
                       label_map=opera.COUGHVID_LABELS["covid"][1], **cls))
    register_task(Task("T6", "coughvid-sex", "CoughVID", "cough", target="gender male 0 / female 1",
                       protocol=cv, loader=opera.coughvid("sex"),
                       label_map=opera.COUGHVID_LABELS["sex"][1], **cls))
    register_task(Task("T7", "icbhi-copd", "ICBHI 2017", "lung", target="patient diagnosis Healthy 0 / COPD 1",
                       protocol="official train/test; val = 20 % of training patients (stratified, seed 1337)",
                       loader=opera.icbhi, label_map=opera.ICBHI_LABELS,
                       batch_size=32, **cls))
    for tid, label, target in (("T8", "smoker", "smoker no 0 / yes 1"), ("T9", "sex", "sex male 0 / female 1")):
        register_task(Task(tid, f"coswara-{label}", "Coswara", "cough-shallow", target=target,
                           protocol="HeAR-aligned google split; val = 20 % of train (stratified, seed 1337)",
                           loader=opera.coswara(label),
                           label_map=opera.COSWARA_LABELS[label][1], batch_size=32, **cls))
    register_task(Task("T10", "kauh", "KAUH", "lung", target="healthy 0 / asthma or COPD 1",
                       protocol="subject-wise 70/10/20 (stratified, seed 42)", loader=opera.kauh,
                       label_map={"N": 0, "asthma": 1, "COPD": 1},
                       epochs=50, batch_size=32, ckpt_every=5, **cls))
    register_task(Task("T11", "copd-severity", "RespiratoryDatabase@TR", "lung (12 channels)",
                       target="COPD severity COPD0..COPD4 (5 classes)",
                       protocol="patient-wise: 20 % test, then 20 % of the rest val (stratified, seed 1337)",
                       loader=opera.copd_tr, label_map=opera.TR_LABELS,
                       batch_size=32, **cls))
    tid = 13
    for mod in ("breath", "vowels"):
        for col, short in (("FVC", "fvc"), ("FEV1", "fev1"), ("FEV1/FVC", "fev1-fvc")):
            register_task(Task(f"T{tid}", f"mmlung-{mod}-{short}", "MMLung", mod, target=f"{col} (spirometry)",
                               protocol="leave-one-participant-out; val = 11 % of the other participants (seed 42)",
                               loader=opera.mmlung(mod, col),
                               ckpt_every=3, patience=5, fold_val_fraction=0.11, **reg))
            tid += 1
    register_task(Task("T19", "nosemic-rr", "NoseMic", "nasal breathing", target="respiratory rate (breaths/min)",
                       protocol="leave-one-subject-out; val = 20 % of the other subjects (seed 42)",
                       loader=opera.nosemic, **reg))
    grouped = "subject-wise 60/20/20 (stratified, seed 42)"
    register_task(Task("circor-murmur", "circor-murmur", "CirCor DigiScope", "heart",
                       target="murmur at this location Absent 0 / Present 1 (Unknown left out); "
                              "@patient: max over the patient's locations vs the patient's murmur",
                       protocol=grouped + "; a child with two Patient IDs is one subject", loader=cardiac.circor,
                       label_map=cardiac.CIRCOR_LABELS, batch_size=32,
                       prompts=PROMPTS["circor-murmur"], **cls))
    register_task(Task("circor-outcome", "circor-outcome", "CirCor DigiScope", "heart",
                       target="patient outcome Normal 0 / Abnormal 1; @patient: mean over its recordings",
                       protocol=grouped + "; a child with two Patient IDs is one subject",
                       loader=cardiac.circor_outcome, label_map=cardiac.CIRCOR_OUTCOME,
                       batch_size=32, prompts=PROMPTS["circor-outcome"], **cls))
    spr = "patient-wise 60/20/20 (stratified, seed 42; the release's train / intra-test share patients)"
    for tid, loader, target, labels in (
            ("sprsound-adventitious", sprsound.adventitious, "record label Normal 0 / CAS, DAS or CAS & DAS 1",
             sprsound.ADVENTITIOUS),
            ("sprsound-4class", sprsound.four_class, "record label Normal / CAS / DAS / CAS & DAS (macro AUROC)",
             sprsound.FOUR_CLASS),
            ("sprsound-disease", sprsound.disease, "patient diagnosis control 0 / pneumonia 1; @patient: mean",
             sprsound.DISEASE)):
        register_task(Task(tid, tid, "SPRSound", "lung", target=target + "; Poor Quality left out", protocol=spr,
                           loader=loader, label_map=labels, batch_size=32,
                           prompts=PROMPTS[tid], **cls))
    by_file = "file-wise 60/20/20 (stratified, seed 42): no patient ids are published"
    register_task(Task("yaseen-abnormal", "yaseen-abnormal", "Yaseen heart valves", "heart",
                       target="normal N 0 / MR, MS or MVP 1", protocol=by_file, loader=cardiac.yaseen_abnormal,
                       label_map={"N": 0, "MR": 1, "MS": 1, "MVP": 1}, batch_size=32,
                       prompts=PROMPTS["yaseen-abnormal"], **cls))
    register_task(Task("yaseen-4class", "yaseen-4class", "Yaseen heart valves", "heart",
                       target="MR / MS / MVP / N (macro AUROC)", protocol=by_file, loader=cardiac.yaseen_4class,
                       label_map=cardiac.YASEEN_4CLASS, batch_size=32,
                       prompts=PROMPTS["yaseen-4class"], **cls))
    register_task(Task("zchsound", "zchsound", "ZCHSound", "heart", target="NORMAL 0 / ASD, PDA, PFO or VSD 1",
                       protocol="recording-level 60/20/20 (stratified, seed 42)", loader=cardiac.zchsound,
                       label_map={"NORMAL": 0, "ASD": 1, "PDA": 1, "PFO": 1, "VSD": 1},
                       batch_size=32, **cls))


_register_builtin()
