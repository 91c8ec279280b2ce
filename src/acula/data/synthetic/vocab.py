"""The vocabulary of the real tables: column names and value spellings copied from CirCor
(training/validation/test_data.csv), ICBHI (icbhi_cycles_demographics_diagnosis.csv) and CoughVID
(metadata_compiled.csv), so report builders written for the real data read the synthetic data unchanged.
Absent CirCor fields are the literal text "nan", as in the real CSV; ICBHI and CoughVID leave them empty.
"""

from __future__ import annotations

DATASETS = {"heart": "synth-circor", "lung": "synth-icbhi", "cough": "synth-coughvid"}
_MODALITY_KEY = {"heart": 1, "lung": 2, "cough": 3}

CIRCOR_COLUMNS = (
    "Patient ID", "Recording locations:", "Age", "Sex", "Height", "Weight", "Pregnancy status",
    "Murmur", "Murmur locations", "Most audible location",
    "Systolic murmur timing", "Systolic murmur shape", "Systolic murmur grading",
    "Systolic murmur pitch", "Systolic murmur quality",
    "Diastolic murmur timing", "Diastolic murmur shape", "Diastolic murmur grading",
    "Diastolic murmur pitch", "Diastolic murmur quality",
    "Outcome", "Campaign", "Additional ID",
)
HEART_EXTRA_COLUMNS = ("Recording location", "Heart rate")
ICBHI_COLUMNS = (
    "Patient_ID", "Recording_Index", "Chest_Location", "Acquisition_Mode", "Equipment",
    "Crackles", "Wheezes", "Age", "Sex", "Diagnosis",
)
LUNG_EXTRA_COLUMNS = ("Respiratory_Rate",)
COUGHVID_COLUMNS = (
    "uuid", "cough_detected", "age", "gender", "respiratory_condition", "fever_muscle_pain",
    "status", "quality_1", "cough_type_1", "diagnosis_1", "severity_1",
)
LABEL_COLUMNS = ("murmur", "crackles", "wheezes", "respiratory_rate")
MANIFEST_COLUMNS = tuple(dict.fromkeys(
    ("audio_path", "record_id", "subject_id", "dataset", "modality", *LABEL_COLUMNS,
     *CIRCOR_COLUMNS, *HEART_EXTRA_COLUMNS, *ICBHI_COLUMNS, *LUNG_EXTRA_COLUMNS, *COUGHVID_COLUMNS)
))
NAN = "nan"

HEART_LOCATIONS = ("AV", "PV", "TV", "MV")  # CirCor's recording order

ICBHI_LOCATIONS = {"Trachea": "Tc", "Anterior left": "Al", "Anterior right": "Ar", "Posterior left": "Pl",
                   "Posterior right": "Pr", "Lateral left": "Ll", "Lateral right": "Lr"}
ICBHI_EQUIPMENT = {  # full name -> (file-name code, acquisition mode)
    "AKG C417L Microphone": ("AKGC417L", "Simultaneous/multichannel"),
    "3M Littmann Classic II SE Stethoscope": ("LittC2SE", "Simultaneous/multichannel"),
    "3M Littmann 3200 Electronic Stethoscope": ("Litt3200", "Sequential/single channel"),
    "WelchAllyn Meditron Master Elite Electronic Stethoscope": ("Meditron", "Sequential/single channel"),
}
_MODE_CODE = {"Simultaneous/multichannel": "mc", "Sequential/single channel": "sc"}


def _base_meta(modality: str, record_id: str, subject_id: str) -> dict:
    dataset = DATASETS[modality]
    return {"record_id": record_id, "subject_id": subject_id, "dataset": dataset, "modality": modality,
            "audio_path": f"{dataset}/{record_id}.wav"}
