"""Audio loading: float32 mono at 16 kHz, or an `AudioError` that names the file and the reason.

Medical-audio corpora contain empty, silent, truncated and mislabelled files; a bad file must stop with a
message that says which file and why, not with NaN features or a crash deep in the STFT. What each kind
of input gives (each row is a test in tests/test_audio_io.py):

| input | outcome |
|---|---|
| WAV / FLAC / OGG (and other libsndfile formats) | loaded |
| PCM_U8 / PCM_16 / PCM_24 / PCM_32 / FLOAT / DOUBLE samples | loaded; integers scaled to [-1, 1) by libsndfile |
| any sample rate (tested 2 kHz to 48 kHz) | resampled with soxr "HQ" (as `librosa.load`); length ≈ duration × 16000 |
| stereo / multi-channel | mean over channels (as `librosa.load`) |
| clipped audio (runs at ±1), float samples beyond ±1 | loaded unchanged |
| very short clip (e.g. 0.05 s) | loaded; the window policy pads it |
| unicode or spaces in the path | loaded |
| truncated WAV (data chunk shorter than its header says) | libsndfile returns the frames present without error: accepted when at least one frame is left |
| missing path | AudioError "file not found" |
| a directory | AudioError "is a directory, not an audio file" |
| zero-byte file | AudioError "empty file (0 bytes)" |
| not audio (e.g. a text file named .wav) | AudioError "cannot decode as audio (libsndfile: Format not recognised.)" |
| header-only WAV (0 frames) | AudioError "no samples" |
| truncated FLAC | AudioError "decoding failed ... (truncated or corrupt file?)": libsndfile trusts the header's length and then reports "flac decoder lost sync" |
| NaN or Inf samples | AudioError "k non-finite samples (NaN/Inf)" |
| all zeros / constant DC | AudioError "no signal (silent or constant DC ...)" |

With `max_seconds`, only the leading frames the caller needs are decoded, so the checks (and decode errors
of a damaged tail) apply to that part only: a clip that is silent for its first 8 s is rejected even if it
has sound later, because that is all a first-window policy would ever see.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass

import numpy as np
import soundfile as sf
import soxr

NO_SIGNAL_PTP = 1e-7  # peak-to-peak below this is silence or DC (a 24-bit LSB is 1.2e-7)
_RESAMPLE_MARGIN_S = 0.1  # extra source audio read past `max_seconds`: soxr's filter then sees the true signal


class AudioError(ValueError):
    """A file that cannot give a usable waveform. `str()` is "<path>: <reason>"."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path, self.reason = os.fspath(path), reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self):  # picklable, so DataLoader workers can send it back to the main process
        return type(self), (self.path, self.reason)


@dataclass(frozen=True)
class AudioInfo:
    path: str
    sample_rate: int
    channels: int
    frames: int
    duration: float  # seconds
    format: str
    subtype: str

    def to_dict(self) -> dict:
        return asdict(self)


def _check_path(path: str) -> None:
    if not os.path.exists(path):
        raise AudioError(path, "file not found")
    if os.path.isdir(path):
        raise AudioError(path, "is a directory, not an audio file")
    try:
        size = os.path.getsize(path)
        with open(path, "rb"):
            pass
    except OSError as e:
        raise AudioError(path, f"cannot read ({e.strerror or e})") from e
    if size == 0:
        raise AudioError(path, "empty file (0 bytes)")


def _libsndfile_reason(e: Exception) -> str:
    return getattr(e, "error_string", None) or str(e)


def audio_info(path: str | os.PathLike) -> AudioInfo:
    """Header facts without decoding the samples (for manifests)."""
    path = os.fspath(path)
    _check_path(path)
    try:
        info = sf.info(path)
    except (sf.SoundFileError, RuntimeError) as e:
        raise AudioError(path, f"cannot decode as audio (libsndfile: {_libsndfile_reason(e)})") from e
    return AudioInfo(path=path, sample_rate=int(info.samplerate), channels=int(info.channels), frames=int(info.frames),
                     duration=float(info.frames) / info.samplerate, format=info.format, subtype=info.subtype)


def resample(wave: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """soxr "HQ", the resampler `librosa.load(sr=...)` uses, so features match the reference pipeline."""
    wave = np.asarray(wave, dtype=np.float32)
    if orig_sr == target_sr:
        return wave
    return np.asarray(soxr.resample(wave, orig_sr, target_sr, quality="HQ"), dtype=np.float32)


def load_audio(path: str | os.PathLike, sample_rate: int = 16000, max_seconds: float | None = None) -> np.ndarray:
    """Decode `path` -> 1-D float32 mono at `sample_rate`; at most `max_seconds` of it when given.

    Raises AudioError (see the table above) instead of returning audio a model cannot use.
    """
    path = os.fspath(path)
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    if max_seconds is not None and not max_seconds > 0:
        raise ValueError(f"max_seconds must be positive or None, got {max_seconds}")
    _check_path(path)

    try:
        f = sf.SoundFile(path)
    except (sf.SoundFileError, RuntimeError) as e:
        raise AudioError(path, f"cannot decode as audio (libsndfile: {_libsndfile_reason(e)})") from e
    with f:
        src_sr = int(f.samplerate)
        n_out = None
        n_read = -1  # everything
        if max_seconds is not None:
            n_out = math.ceil(round(max_seconds * sample_rate, 6))
            n_read = math.ceil(n_out * src_sr / sample_rate) + max(1024, math.ceil(_RESAMPLE_MARGIN_S * src_sr))
        try:
            data = f.read(n_read, dtype="float32", always_2d=True)
        except (sf.SoundFileError, RuntimeError) as e:
            raise AudioError(path, f"decoding failed, header promised {f.frames} frames "
                                   f"(truncated or corrupt file?): {_libsndfile_reason(e)}") from e

    if data.shape[0] == 0:
        raise AudioError(path, "no samples (header only / 0 frames)")
    n_bad = int(data.size - np.count_nonzero(np.isfinite(data)))
    if n_bad:
        raise AudioError(path, f"{n_bad} non-finite samples (NaN/Inf) out of {data.size}")
    wave = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    ptp = float(wave.max()) - float(wave.min())
    if ptp < NO_SIGNAL_PTP:
        where = f" in the first {max_seconds} s" if max_seconds is not None else ""
        raise AudioError(path, f"no signal{where} (silent or constant DC: peak-to-peak {ptp:.3g} < {NO_SIGNAL_PTP:g})")

    wave = resample(wave, src_sr, sample_rate)
    if n_out is not None:
        wave = wave[:n_out]
    if wave.size == 0:
        raise AudioError(path, f"no samples left after resampling {data.shape[0]} frames from {src_sr} Hz "
                               f"to {sample_rate} Hz")
    return np.ascontiguousarray(wave, dtype=np.float32)
