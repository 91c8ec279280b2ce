"""Audio loading: float32 mono at 16 kHz, or an `AudioError` that names the file and the reason.

Medical-audio corpora contain empty, silent, truncated and mislabelled files; a bad file must stop with a
message that says which file and why, not with NaN features or a crash deep in the STFT. What each kind
of input gives (each row is a test in tests/test_audio_io.py):

| input | outcome |
|---|---|
| WAV / FLAC / OGG (and other libsndfile formats) | loaded |
| PCM_U8 / PCM_16 / PCM_24 / PCM_32 / FLOAT / DOUBLE samples | loaded; integers scaled to [-1, 1) by libsndfile |
| any sample rate from 1 kHz (tested 1 kHz to 48 kHz) | resampled with soxr "HQ" (as `librosa.load`); length ≈ duration × 16000 |
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
| truncated FLAC | AudioError "decoding failed ... (truncated or corrupt file?)": libsndfile reports "flac decoder lost sync" |
| FLAC of unknown length (STREAMINFO total 0, as streaming encoders write it) | loaded |
| header promising more frames than the file holds (e.g. 6e10) | whatever libsndfile can decode, or its decode error; memory follows the decoded frames, not the header |
| sample rate below 1000 Hz in the header (a corrupt rate field, e.g. 1 or 2 Hz) | AudioError "implausible sample rate" |
| NaN or Inf samples | AudioError "k non-finite samples (NaN/Inf)" |
| finite float samples near the float32 limit (±3e38) | loaded (channel mean in float64, resampled at a safe power-of-two scale); AudioError "exceeds the float32 range" if the resampled wave does not fit |
| all zeros / constant DC | AudioError "no signal (silent or constant DC ...)" |

Samples are decoded in blocks until libsndfile reports the end, never into one array sized by the header's
frame count: a header can lie (a corrupt length field) or say nothing (libsndfile reports 2^63-1 frames for
an unknown length). Memory therefore grows with what is actually decodable, and with the rate floor the
output holds at most `sample_rate` / 1000 samples per decoded frame (16 at 16 kHz; a 1-Hz header gave 16000).
Not bounded: a valid but extremely compressible file (e.g. hours of FLAC silence) decodes in full when
`max_seconds` is None; pass `max_seconds` to bound it.

With `max_seconds`, only the leading frames the caller needs are decoded, so the checks (and decode errors
of a damaged tail) apply to that part only: a clip that is silent for its first 8 s is rejected even if it
has sound later, because that is all a first-window policy would ever see.

`load_audio` returns the raw amplitude (no normalisation): huge values are kept, not rescaled.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass

import numpy as np
import soundfile as sf
import soxr

NO_SIGNAL_PTP = 1e-7  # peak-to-peak below this is silence or DC (a 24-bit LSB is 1.2e-7)
MIN_SOURCE_RATE = 1000  # Hz; lower rates are corrupt headers (1 Hz upsampled to 16 kHz is a 16000x blow-up)
_RESAMPLE_MARGIN_S = 0.1  # extra source audio read past `max_seconds`: soxr's filter then sees the true signal
_BLOCK_SAMPLES = 1 << 18  # samples (frames x channels) decoded per libsndfile call: 1 MiB of float32
_SOXR_MAX_PEAK = 2.0**64  # soxr filters in float32 and overflows near 1e38; louder input is scaled down first
_UNKNOWN_FRAMES = 1 << 62  # libsndfile reports an unknown length as SF_COUNT_MAX (2^63 - 1)


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
    """soxr "HQ", the resampler `librosa.load(sr=...)` uses, so features match the reference pipeline.

    soxr computes in float32, so a wave whose peak is near the float32 limit overflows inside its filter. Such
    a wave is scaled down by a power of two, which is exact in floating point, and scaled back afterwards;
    ordinary audio takes librosa's path unchanged. Resampled values beyond the float32 range (filter
    overshoot of a wave already at the limit) come back as +-inf: `load_audio` rejects them.
    """
    wave = np.asarray(wave, dtype=np.float32)
    if orig_sr == target_sr:
        return wave
    peak = float(np.max(np.abs(wave))) if wave.size else 0.0
    shift = math.frexp(peak)[1] if peak > _SOXR_MAX_PEAK else 0  # scaled peak in [0.5, 1)
    if not shift:
        return np.asarray(soxr.resample(wave, orig_sr, target_sr, quality="HQ"), dtype=np.float32)
    out = soxr.resample(np.ldexp(wave, -shift), orig_sr, target_sr, quality="HQ")
    with np.errstate(over="ignore"):
        return np.ldexp(np.asarray(out, dtype=np.float64), shift).astype(np.float32)


def _read_into(f: sf.SoundFile, out: np.ndarray) -> int:
    """Decode up to len(out) frames into `out` (C-contiguous float32, frames x channels); frames decoded.

    Calls libsndfile directly: `SoundFile.read` seeks to its own count of the position after every read, and
    that seek fails at the end of a FLAC of unknown length, which would lose the last block.
    """
    n = sf._snd.sf_readf_float(f._file, sf._ffi.cast("float *", out.ctypes.data), out.shape[0])
    err = sf._snd.sf_error(f._file)
    if err:
        raise sf.LibsndfileError(err)
    return int(n)


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
        src_sr, channels = int(f.samplerate), int(f.channels)
        if src_sr < MIN_SOURCE_RATE:
            raise AudioError(path, f"implausible sample rate {src_sr} Hz in the header (below {MIN_SOURCE_RATE} Hz; "
                                   f"corrupt header?)")
        n_out = n_want = None  # None: to the end of the file
        if max_seconds is not None:
            n_out = math.ceil(round(max_seconds * sample_rate, 6))
            n_want = math.ceil(n_out * src_sr / sample_rate) + max(1024, math.ceil(_RESAMPLE_MARGIN_S * src_sr))
        block = max(1, _BLOCK_SAMPLES // channels)
        parts, n_frames, n_bad = [], 0, 0
        while n_want is None or n_frames < n_want:
            buf = np.empty((block if n_want is None else min(block, n_want - n_frames), channels), np.float32)
            try:
                n = _read_into(f, buf)
            except (sf.SoundFileError, RuntimeError) as e:
                promised = "no length" if f.frames >= _UNKNOWN_FRAMES else f"{f.frames} frames"
                raise AudioError(path, f"decoding failed, header promised {promised} "
                                       f"(truncated or corrupt file?): {_libsndfile_reason(e)}") from e
            if n == 0:
                break
            buf = buf[:n]
            n_frames += n
            n_bad += int(buf.size - np.count_nonzero(np.isfinite(buf)))
            # float64 mean: the float32 sum of finite samples near 3e38 overflows; their mean always fits
            parts.append(buf.mean(axis=1, dtype=np.float64).astype(np.float32) if channels > 1 else buf[:, 0])

    if n_frames == 0:
        raise AudioError(path, "no samples (header only / 0 frames)")
    if n_bad:
        raise AudioError(path, f"{n_bad} non-finite samples (NaN/Inf) out of {n_frames * channels}")
    wave = np.concatenate(parts) if len(parts) > 1 else parts[0]
    lo, hi = float(wave.min()), float(wave.max())
    ptp = hi - lo
    if ptp < NO_SIGNAL_PTP:
        where = f" in the first {max_seconds} s" if max_seconds is not None else ""
        raise AudioError(path, f"no signal{where} (silent or constant DC: peak-to-peak {ptp:.3g} < {NO_SIGNAL_PTP:g})")

    wave = resample(wave, src_sr, sample_rate)
    if n_out is not None:
        wave = wave[:n_out]
    if wave.size == 0:
        raise AudioError(path, f"no samples left after resampling {n_frames} frames from {src_sr} Hz "
                               f"to {sample_rate} Hz")
    if not np.isfinite(wave).all():
        raise AudioError(path, f"resampled audio exceeds the float32 range (input peak {max(-lo, hi):.3g} "
                               f"at {src_sr} Hz; mis-scaled float file?)")
    return np.ascontiguousarray(wave, dtype=np.float32)
