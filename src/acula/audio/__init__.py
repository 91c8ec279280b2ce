"""Audio in, log-mel out: loading with clear errors (`io`) and the OPERA/AcuLa front end (`frontend`)."""

from acula.audio.frontend import (
    FRONTEND_VERSION,
    POLICIES,
    LogMel,
    acula_windows,
    fingerprint,
    frames_for,
    get_policy,
    logmel,
    mel_filterbank,
    opera_windows,
    repeat_pad,
    trim_silence,
)
from acula.audio.io import AudioError, AudioInfo, audio_info, load_audio, resample

__all__ = [
    "FRONTEND_VERSION", "POLICIES", "LogMel", "acula_windows", "fingerprint", "frames_for", "get_policy", "logmel",
    "mel_filterbank", "opera_windows", "repeat_pad", "trim_silence",
    "AudioError", "AudioInfo", "audio_info", "load_audio", "resample",
]
