"""The synthetic corpus: recordings of all subjects, and their WAV files and manifest on disk."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from ..._io import atomic_path
from ...datasets.manifest import write_manifest
from .cough import _cough_subject
from .heart import _heart_subject
from .lung import _lung_subject
from .recording import SyntheticRecording
from .vocab import LABEL_COLUMNS, MANIFEST_COLUMNS


def generate(n_heart_subjects: int, n_lung_subjects: int, n_cough_subjects: int, seed: int = 0,
             sample_rate: int = 16000, seconds: float = 8.1875) -> list[SyntheticRecording]:
    """Recordings of all subjects (heart, then lung, then cough). Cheap: audio renders lazily."""
    for name, v in (("n_heart_subjects", n_heart_subjects), ("n_lung_subjects", n_lung_subjects),
                    ("n_cough_subjects", n_cough_subjects), ("seed", seed)):
        if int(v) != v or v < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {v!r}")
    if sample_rate < 4000:
        raise ValueError(f"sample_rate must be at least 4000 Hz to hold heart and lung sounds, got {sample_rate}")
    n = int(round(seconds * sample_rate))
    if n < sample_rate:
        raise ValueError(f"seconds must give at least 1 s of audio, got {seconds}")
    recs = []
    for make, count in ((_heart_subject, n_heart_subjects), (_lung_subject, n_lung_subjects),
                        (_cough_subject, n_cough_subjects)):
        for i in range(int(count)):
            recs += [SyntheticRecording(r.meta, r.labels, r.params, sample_rate, n) for r in make(int(seed), i)]
    return recs


def manifest_row(rec: SyntheticRecording) -> dict:
    """The manifest row: labels as text ('' for not applicable), then every source field."""
    row = {c: "" for c in MANIFEST_COLUMNS}
    row.update(rec.meta)
    for k in LABEL_COLUMNS:
        v = rec.labels.get(k)
        row[k] = "" if v is None else (f"{v:.1f}" if isinstance(v, float) else str(v))
    return row


def _is_current(path: Path, rec: SyntheticRecording) -> bool:
    try:
        with sf.SoundFile(path) as f:
            return (f.samplerate == rec.sample_rate and f.frames == rec.n_samples and f.channels == 1
                    and f.comment == rec.spec_hash())
    except (sf.LibsndfileError, RuntimeError, OSError):
        return False


def write_wav(path: Path, rec: SyntheticRecording) -> None:
    """16-bit PCM like the real corpora (CirCor, ICBHI): a quarter of float32's size, and its
    -96 dBFS quantisation floor lies far below the synthetic noise floor. The spec hash goes in the
    WAV comment so a re-run can tell a finished file from a stale one without rendering it."""
    pcm = np.round(np.clip(rec.audio, -1.0, 1.0) * 32767).astype(np.int16)
    with atomic_path(path) as tmp:
        with sf.SoundFile(tmp, "w", samplerate=rec.sample_rate, channels=1, subtype="PCM_16", format="WAV") as f:
            f.comment = rec.spec_hash()
            f.write(pcm)


def write_corpus(out_dir: str | Path, recordings: list[SyntheticRecording], manifest_name: str = "manifest.csv",
                 progress: bool = False) -> Path:
    """Write `<dataset>/<record_id>.wav` under `out_dir` and the manifest (paths relative to it);
    returns the manifest path. WAVs whose embedded spec hash is current are skipped, so an
    interrupted or repeated run only renders what is missing or stale."""
    out_dir = Path(out_dir)
    ids = [r.record_id for r in recordings]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise ValueError(f"duplicate record_id {dup!r}: recordings from different generate() calls mixed?")
    items = recordings
    if progress:
        from tqdm.auto import tqdm

        items = tqdm(recordings, desc=f"synthetic corpus -> {out_dir}", unit="rec")
    for rec in items:
        path = out_dir / rec.meta["audio_path"]
        if not _is_current(path, rec):
            write_wav(path, rec)
    manifest = out_dir / manifest_name
    write_manifest(manifest, [manifest_row(r) for r in recordings], columns=list(MANIFEST_COLUMNS))
    return manifest


def build(out_dir: str | Path, n_heart: int = 72, n_lung: int = 64, n_cough: int = 100, seed: int = 0,
          sample_rate: int = 16000, seconds: float = 8.1875, progress: bool = True) -> Path:
    """generate + write_corpus. The defaults give ≈625 recordings (heart ≈265, lung 256, cough 100)."""
    recs = generate(n_heart, n_lung, n_cough, seed=seed, sample_rate=sample_rate, seconds=seconds)
    return write_corpus(out_dir, recs, progress=progress)
