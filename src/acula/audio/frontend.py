"""Log-mel front end and window policies (docs/protocol.md#front-end, #input-policies).

Every encoder in acula sees audio the way OPERA and AcuLa prepared it:

    16 kHz mono wave --policy--> (K, L) windows --LogMel--> (K, T, 64) in [0, 1] --encoder--> (K, D) --mean--> (D,)

* `LogMel` is librosa's `melspectrogram` + `power_to_db(ref=max)` + per-clip min-max, re-done in torch so it
  runs batched on any device without librosa. Each row of a batch is normalised on its own, so a window's
  features never depend on which other windows share its batch.
* A policy decides which stretch of a recording the encoder sees:
  - "acula": the first 131000 samples (8.1875 s -> 256 frames), zero-padded at the end; one window.
  - "opera": trim silence, then 8.18-s windows with 50% overlap plus a repeat-padded final window (OPERA-GT's
    downstream path). Every window gets its own log-mel (so its own min-max normalisation).
  Averaging encoder features over the K windows of one recording is the extraction pipeline's job, not this
  module's; with the "acula" policy K is 1 and the mean is the identity.
* `fingerprint()` names the preprocessing settings, so a feature cache can refuse features computed differently;
  `InputSpec.fingerprint` (audio/spec.py) is the one caller that decides which settings go in.
"""

from __future__ import annotations

import functools
import inspect
import json
import math
from typing import Callable

import numpy as np
import torch
from torch import nn

from acula._io import sha256_text

FRONTEND_VERSION = 1  # bump when any change alters the numbers below, so cached features are recomputed
SAMPLE_RATE = 16000
ACULA_WINDOW_SAMPLES = 131000  # 8 s + 3000 samples: exactly 256 frames (docs/protocol.md#alignment-input)
OPERA_WINDOW_SECONDS = 8.18  # OPERA-GT downstream: int(8.18 * 16000) = 130880 samples, also 256 frames
_MAX_PEAK_EXP = 32  # LogMel scales clips with peaks >= 2^32 down; float32 power overflows from ~3.6e16 (see LogMel)


# ----------------------------------------------------------------------------------------------------------
# log-mel


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    """Slaney mel scale (librosa `htk=False`): linear below 1 kHz, logarithmic above."""
    f = np.asarray(f, dtype=np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
    return np.where(f >= min_log_hz, min_log_mel + np.log(np.maximum(f, min_log_hz) / min_log_hz) / logstep, f / f_sp)


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """(n_mels, n_fft//2 + 1) float32 triangles, bit-identical to `librosa.filters.mel(norm="slaney")`.

    The float32 rounding is replayed step by step (triangle rounded first, then scaled by the area norm in
    float64) because that is what librosa does; building it all in float64 differs by an ulp here and there.
    """
    if not 0 <= fmin < fmax <= sample_rate / 2:
        raise ValueError(f"mel band edges need 0 <= fmin < fmax <= sample_rate/2, got fmin={fmin} fmax={fmax} "
                         f"at sample_rate={sample_rate}")
    fft_freqs = np.fft.rfftfreq(n_fft, d=1.0 / sample_rate)
    mel_f = _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = np.subtract.outer(mel_f, fft_freqs)
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper)).astype(np.float32)
    enorm = 2.0 / (mel_f[2:] - mel_f[:-2])  # Slaney: every triangle has unit area in Hz
    return (weights.astype(np.float64) * enorm[:, None]).astype(np.float32)


def frames_for(n_samples: int, hop_length: int = 512) -> int:
    """Frames of a centred STFT: T = 1 + N // hop (docs/protocol.md#front-end: 131000 -> 256, 128000 -> 251)."""
    if n_samples < 0:
        raise ValueError(f"n_samples must be >= 0, got {n_samples}")
    return 1 + n_samples // hop_length


class LogMel(nn.Module):
    """(B, N) or (N,) waveform -> (B, T, n_mels) log-mel in [0, 1], T = 1 + N // hop_length.

    The STFT and mel projection run in float32; the dB and min-max step runs in float64 because the -80 dB
    floor and the (S - min) / (max - min) division amplify float32 rounding near the floor. A flat clip
    (max == min, e.g. digital silence) gives zeros, which is also what OPERA's unnormalised fallback
    yields, since ref=max puts every bin of a flat clip at 0 dB.

    A clip whose peak reaches 2^32 is first scaled down by a power of two (its peak then lies in [2^31, 2^32)):
    the float32 power |X|^2 <= (512 * peak)^2 overflows for peaks above ~3.6e16, which would silently give an
    all-zero log-mel. A power-of-two gain is exact in float arithmetic and the dB step is relative to the
    clip's max, so the output is unchanged (to float64 rounding); quieter clips are not touched at all, so
    the `amin` floor acts on them exactly as in librosa. Each row is scaled on its own (batch invariance).
    """

    def __init__(
        self,
        sample_rate: int = SAMPLE_RATE,
        n_fft: int = 1024,
        hop_length: int = 512,
        n_mels: int = 64,
        fmin: float = 50.0,
        fmax: float = 8000.0,
        top_db: float = 80.0,
        amin: float = 1e-10,
    ):
        super().__init__()
        self.sample_rate, self.n_fft, self.hop_length = int(sample_rate), int(n_fft), int(hop_length)
        self.n_mels, self.fmin, self.fmax = int(n_mels), float(fmin), float(fmax)
        self.top_db, self.amin = float(top_db), float(amin)
        # periodic Hann, as scipy.signal.get_window("hann", n_fft, fftbins=True) used by librosa
        window = torch.hann_window(self.n_fft, periodic=True, dtype=torch.float64).float()
        fb = mel_filterbank(self.sample_rate, self.n_fft, self.n_mels, self.fmin, self.fmax)
        # not persistent: both are recomputed from the config, so they never need to sit in a checkpoint
        self.register_buffer("window", window, persistent=False)
        self.register_buffer("mel_fb", torch.from_numpy(fb), persistent=False)

    def config(self) -> dict:
        return dict(sample_rate=self.sample_rate, n_fft=self.n_fft, hop_length=self.hop_length, n_mels=self.n_mels,
                    fmin=self.fmin, fmax=self.fmax, top_db=self.top_db, amin=self.amin)

    def frames_for(self, n_samples: int) -> int:
        return frames_for(n_samples, self.hop_length)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        if wave.ndim == 1:
            wave = wave[None]
        if wave.ndim != 2 or wave.shape[-1] == 0:
            raise ValueError(f"LogMel expects a waveform of shape (batch, samples) or (samples,) with samples >= 1, "
                             f"got {tuple(wave.shape)}")
        peak = wave.abs().amax(dim=1, keepdim=True).double()
        shift = (torch.frexp(peak).exponent - _MAX_PEAK_EXP).clamp_min(0)  # 0 for peaks < 2^32, inf and NaN
        scale = torch.exp2(-shift.double())  # exact powers of two; 1 for almost every clip
        # scaled before the cast to float32, so a float64 wave beyond the float32 range fits too
        wave = (wave * scale).float() if wave.dtype == torch.float64 else wave.float() * scale.float()
        spec = torch.stft(wave, self.n_fft, self.hop_length, window=self.window, center=True,
                          pad_mode="constant", return_complex=True)  # (B, F, T)
        power = spec.real.square() + spec.imag.square()
        mel = torch.matmul(self.mel_fb, power).double()  # (B, M, T)
        # power_to_db(ref=np.max, amin, top_db) per clip
        db = 10.0 * torch.log10(mel.clamp_min(self.amin))
        db = db - 10.0 * torch.log10(mel.amax(dim=(1, 2), keepdim=True).clamp_min(self.amin))
        db = torch.maximum(db, db.amax(dim=(1, 2), keepdim=True) - self.top_db)
        lo, hi = db.amin(dim=(1, 2), keepdim=True), db.amax(dim=(1, 2), keepdim=True)
        span = hi - lo
        out = torch.where(span > 0, (db - lo) / torch.where(span > 0, span, 1.0), torch.zeros_like(db))
        return out.transpose(1, 2).float().contiguous()

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.config().items())


@functools.lru_cache(maxsize=8)
def _cached_logmel(sample_rate: int, device: str) -> LogMel:
    return LogMel(sample_rate=sample_rate).to(device)


def logmel(wave: torch.Tensor | np.ndarray, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """The published log-mel of a (N,) or (B, N) waveform already at `sample_rate` -> (B, T, 64) float32
    (docs/protocol.md#front-end)."""
    if not isinstance(wave, torch.Tensor):
        wave = torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32))
    with torch.no_grad():
        return _cached_logmel(int(sample_rate), str(wave.device))(wave)


# ----------------------------------------------------------------------------------------------------------
# window policies (numpy, 1-D float32 waveforms)


def _as_wave(wave: np.ndarray, what: str) -> np.ndarray:
    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim != 1:
        raise ValueError(f"{what}: expected a 1-D mono waveform, got shape {wave.shape}")
    if wave.size == 0:
        raise ValueError(f"{what}: the waveform is empty")
    if not np.isfinite(wave).all():
        raise ValueError(f"{what}: the waveform contains NaN or Inf")
    return wave


def acula_windows(wave: np.ndarray, n_samples: int = ACULA_WINDOW_SAMPLES) -> np.ndarray:
    """AcuLa training input: the first `n_samples`, zero-padded at the end -> (1, n_samples)
    (docs/protocol.md#alignment-input)."""
    wave = _as_wave(wave, "acula_windows")
    out = np.zeros((1, n_samples), dtype=np.float32)
    n = min(n_samples, wave.size)
    out[0, :n] = wave[:n]
    return out


def trim_silence(
    wave: np.ndarray, top_db: float = 60.0, frame_length: int = 1600, hop_length: int = 800
) -> tuple[np.ndarray, tuple[int, int]]:
    """`librosa.effects.trim(wave, top_db, ref=np.max, frame_length, hop_length)` -> (trimmed, (start, end)).

    A frame is kept when its RMS (centred, zero-padded frames) is within `top_db` of the loudest frame. Like
    librosa, the loudest frame is always kept (and an all-silent clip is kept whole, because the reference
    is clamped at amin = 1e-5), so only an empty input could trim to nothing.
    """
    wave = _as_wave(wave, "trim_silence")
    pad = frame_length // 2
    padded = np.pad(wave, (pad, pad)).astype(np.float64)
    frames = np.lib.stride_tricks.sliding_window_view(padded, frame_length)[::hop_length]
    power = np.mean(frames**2, axis=-1)  # RMS^2 per frame
    amin_sq = 1e-10  # librosa amplitude_to_db: amin=1e-5, squared
    db = 10.0 * np.log10(np.maximum(amin_sq, power)) - 10.0 * np.log10(max(amin_sq, float(power.max())))
    keep = np.flatnonzero(db > -top_db)
    if keep.size == 0:
        return wave[:0], (0, 0)
    start, end = int(keep[0]) * hop_length, min(wave.size, (int(keep[-1]) + 1) * hop_length)
    return wave[start:end], (start, end)


def repeat_pad(segment: np.ndarray, recording: np.ndarray, length: int) -> np.ndarray:
    """OPERA `_duplicate_padding(types="repeat")`: `segment` at the END, the front filled with the tail of
    `recording` repeated end to end until long enough.

    OPERA's random.seed(7456); random.random() < 0.5 always picks this branch; we take the branch without
    touching Python's global random state.
    """
    left = length - segment.size
    if left < 0:
        raise ValueError(f"repeat_pad: segment of {segment.size} samples is longer than the window ({length})")
    out = np.empty(length, dtype=np.float32)
    out[left:] = segment
    # the last `left` samples of recording tiled forever, i.e. index (i mod N) counted back from the end
    out[:left] = recording[np.arange(-left, 0) % recording.size]
    return out


def opera_windows(
    wave: np.ndarray, sample_rate: int = SAMPLE_RATE, seconds: float = OPERA_WINDOW_SECONDS
) -> np.ndarray:
    """OPERA-GT downstream chunks -> (K, L), L = int(seconds * sr): OPERA's `get_split_signal_librosa`
    (docs/protocol.md#downstream-windows).

    Trim silence (100 ms frames, 50 ms hop, 60 dB), then if N > L: every L-window at hop L//2 plus one final
    chunk `[K0 * (L//2):]` repeat-padded at the front (always added, even when it overlaps the last full
    window heavily); if N <= L: one repeat-padded copy.
    """
    wave = _as_wave(wave, "opera_windows")
    frame_length = int(sample_rate / 10)
    trimmed, _ = trim_silence(wave, top_db=60.0, frame_length=frame_length, hop_length=frame_length // 2)
    if trimmed.size == 0:
        raise ValueError("opera_windows: the recording trims to nothing (no non-silent frame)")
    length = int(seconds * sample_rate)
    if length < 2:
        raise ValueError(f"opera_windows: window of {seconds} s at {sample_rate} Hz is shorter than 2 samples")
    if trimmed.size <= length:
        return repeat_pad(trimmed, trimmed, length)[None]
    hop = length // 2
    n_full = 1 + (trimmed.size - length) // hop  # librosa.util.frame
    full = np.lib.stride_tricks.sliding_window_view(trimmed, length)[::hop][:n_full]
    last = repeat_pad(trimmed[n_full * hop:], trimmed, length)
    return np.concatenate([full, last[None]], axis=0)


# the window functions by name, for callers holding a bare waveform; the pipeline names its inputs with
# `acula.audio.spec.InputSpec`, which calls these
POLICIES: dict[str, Callable[..., np.ndarray]] = {"acula": acula_windows, "opera": opera_windows}


def get_policy(name: str) -> Callable[..., np.ndarray]:
    """Window policy by name: a function (1-D 16 kHz float32 wave) -> (K, L) float32 windows."""
    try:
        return POLICIES[name]
    except KeyError:
        raise ValueError(f"unknown window policy {name!r}; choose one of {sorted(POLICIES)}") from None


# ----------------------------------------------------------------------------------------------------------
# cache keys


_POLICY_WINDOW_SAMPLES = {"acula": ACULA_WINDOW_SAMPLES, "opera": int(OPERA_WINDOW_SECONDS * SAMPLE_RATE)}


def fingerprint(**settings) -> str:
    """16-hex-digit hash of the preprocessing settings; defaults fill in what is not given.

    Known keys: sample_rate, n_fft, hop_length, n_mels, fmin, fmax, top_db, policy, window_samples (default:
    the policy's window). Extra keys (e.g. the encoder name) are hashed too. Numbers are compared by value,
    so 50 and 50.0 give the same fingerprint.
    """
    merged = {k: p.default for k, p in inspect.signature(LogMel).parameters.items()}
    merged.update(policy="acula", version=FRONTEND_VERSION)
    merged.update(settings)
    if merged.get("window_samples") is None:
        if merged["policy"] not in _POLICY_WINDOW_SAMPLES:
            raise ValueError(f"fingerprint: give window_samples for policy {merged['policy']!r}")
        merged["window_samples"] = _POLICY_WINDOW_SAMPLES[merged["policy"]]

    def norm(v):
        if isinstance(v, bool) or v is None or isinstance(v, str):
            return v
        if isinstance(v, (int, float, np.integer, np.floating)):
            v = float(v)
            if not math.isfinite(v):
                raise ValueError(f"fingerprint: non-finite setting {v}")
            return repr(v)
        raise TypeError(f"fingerprint: settings must be numbers, strings, booleans or None, got {type(v).__name__}")

    text = json.dumps({k: norm(v) for k, v in sorted(merged.items())}, sort_keys=True)
    return sha256_text(text)[:16]
