"""Audio in, log-mel out: loading with clear errors (`io`) and the OPERA/AcuLa front end (`frontend`).

`io` (soundfile, soxr) loads on first use of one of its names, so the torch front end also imports on machines
without the audio-file libraries (e.g. a GPU box that only gets in-memory waveforms).
"""

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

_IO_NAMES = ("AudioError", "AudioInfo", "audio_info", "load_audio", "resample")

__all__ = [
    "FRONTEND_VERSION", "POLICIES", "LogMel", "acula_windows", "fingerprint", "frames_for", "get_policy", "logmel",
    "mel_filterbank", "opera_windows", "repeat_pad", "trim_silence", *_IO_NAMES,
]


def __getattr__(name: str):
    if name in _IO_NAMES:
        from acula.audio import io

        return getattr(io, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
