"""Audio in, encoder inputs out: loading with clear errors (`io`), the OPERA/AcuLa front end (`frontend`) and
`InputSpec` (`spec`), the one description of how a recording becomes encoder inputs."""

from acula.audio.spec import InputSpec

_FRONTEND = ("FRONTEND_VERSION", "POLICIES", "LogMel", "acula_windows", "fingerprint", "frames_for", "get_policy",
             "logmel", "mel_filterbank", "opera_windows", "repeat_pad", "trim_silence")
_IO = ("AudioError", "AudioInfo", "audio_info", "load_audio", "resample")

__all__ = [*_FRONTEND, *_IO, "InputSpec"]


def __getattr__(name: str):
    """The front end and the loader import numpy and torch: loaded on first use, so `InputSpec` (which the encoder
    registry holds) stays importable without them."""
    if name in _FRONTEND:
        from acula.audio import frontend

        return getattr(frontend, name)
    if name in _IO:
        from acula.audio import io

        return getattr(io, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
