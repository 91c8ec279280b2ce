"""`InputSpec`: how a recording becomes encoder inputs, in one vocabulary for every command.

    spec = InputSpec("opera", 8.18)                      # OPERA-GT's benchmark windows
    x = spec.inputs(spec.load(path, contract), contract)  # (K, T, n_mels) log-mel or (K, N) waveforms
    key = spec.fingerprint(contract)                      # the cache key of these inputs

Policies (what stretch of a recording the encoder sees):

* "acula": the first `seconds`, padded at the end ("zero", AcuLa's training input) or by repeating the clip
  ("repeat", so no window is part silence); one window.
* "opera": silence trimmed, `seconds`-long windows at 50 % overlap plus a repeat-padded last one (OPERA-GT).
* "whole": the whole recording in one window; optionally silence-trimmed and padded up to `seconds` ("repeat"
  or "zero", OPERA-CE/CT's benchmark path).
* "cover": windows covering the whole clip at 50 % overlap, the last zero-padded (the HEAR timestamp API).

The contract argument is any object with `sample_rate`, `frontend`, `n_mels` and `min_frames` (an encoder's
`InputContract`): this module sits below the encoders and must not import them. Importing it loads only the
standard library, so the encoder registry can hold specs and still list encoders without torch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

POLICY_NAMES = ("acula", "opera", "whole", "cover")
# (padding, trimming) each policy has when not told otherwise; the fingerprint leaves these out, so caches built
# before InputSpec existed keep their keys
_DEFAULTS = {"acula": ("zero", None), "opera": ("repeat", "silence"), "whole": (None, None), "cover": ("zero", None)}
_PADDINGS = {"acula": ("zero", "repeat"), "opera": ("repeat",), "whole": (None, "repeat", "zero"), "cover": ("zero",)}


@dataclass(frozen=True)
class InputSpec:
    policy: str
    seconds: float | None = None  # window length; for "whole", the length short clips are padded to
    padding: str | None = None  # None: the policy's default (see _DEFAULTS)
    trimming: str | None = None  # None or "silence" (OPERA's 60 dB trim); "opera" always trims

    def __post_init__(self):
        if self.policy not in POLICY_NAMES:
            raise ValueError(f"unknown window policy {self.policy!r} ({' | '.join(POLICY_NAMES)})")
        pad, trim = _DEFAULTS[self.policy]
        if self.padding is None and pad is not None:
            object.__setattr__(self, "padding", pad)
        if self.trimming is None and trim is not None:
            object.__setattr__(self, "trimming", trim)
        if self.padding not in _PADDINGS[self.policy]:
            raise ValueError(f"policy {self.policy!r} pads with {' | '.join(map(str, _PADDINGS[self.policy]))}, "
                             f"not {self.padding!r}")
        if self.trimming not in (None, "silence") or (self.policy == "opera" and self.trimming != "silence"):
            raise ValueError(f"trimming must be None or 'silence' ('opera' always trims), got {self.trimming!r}")
        if self.seconds is None and (self.policy != "whole" or self.padding is not None):
            raise ValueError(f"policy {self.policy!r} needs seconds")
        if self.seconds is not None:
            if not float(self.seconds) > 0:
                raise ValueError(f"seconds must be > 0, got {self.seconds}")
            object.__setattr__(self, "seconds", float(self.seconds))

    @classmethod
    def of(cls, contract: Any, policy: str | None = None) -> "InputSpec":
        """The spec a policy name means for an encoder: its own window length and the policy's defaults."""
        policy = policy or contract.window_policy
        if policy == "whole":
            return cls("whole")
        if policy not in POLICY_NAMES:
            raise ValueError(f"unknown window policy {policy!r} (acula | opera | whole)")
        return cls(policy, float(contract.window_seconds))

    def to_dict(self) -> dict:
        return asdict(self)

    # ------------------------------------------------------------------------------------------ sizes and keys

    def window_samples(self, contract: Any) -> int | None:
        """Samples per window, or None where each clip is one window of its own length."""
        sr = int(contract.sample_rate)
        if self.policy in ("acula", "cover"):
            return int(round(self.seconds * sr))
        if self.policy == "opera":
            return int(self.seconds * sr)  # OPERA's int(), not round(): 8.18 s -> 130880 samples
        return None

    def min_samples(self, contract: Any) -> int | None:
        """"whole" with padding: `seconds` of audio, lengthened until the log-mel has the encoder's minimum
        frame count (OPERA-CE/CT at 1 s would otherwise get too few frames)."""
        if self.policy != "whole" or self.padding is None:
            return None
        from .frontend import frames_for

        sr = int(contract.sample_rate)
        n = int(self.seconds * sr)
        while frames_for(n) < contract.min_frames:
            n += max(1, sr // 100)
        return n

    def settings(self, contract: Any) -> dict:
        """Everything that changes the inputs' numbers, and nothing else (not max_frames, not the encoder)."""
        from .frontend import FRONTEND_VERSION

        out = dict(frontend=contract.frontend, sample_rate=int(contract.sample_rate), n_mels=int(contract.n_mels),
                   policy=self.policy, window_samples=self.window_samples(contract) or "whole clip",
                   frontend_version=FRONTEND_VERSION)
        pad, trim = _DEFAULTS[self.policy]
        if self.padding != pad:
            out.update(padding=self.padding, min_samples=self.min_samples(contract))
        if self.trimming != trim:
            out["trimming"] = self.trimming
        return out

    def fingerprint(self, contract: Any) -> str:
        """The one cache key of these inputs (16 hex digits); every cache of features or windows uses it."""
        from .frontend import fingerprint

        return fingerprint(**self.settings(contract))

    # ------------------------------------------------------------------------------------------ computing

    def load(self, path, contract: Any):
        """The recording at the encoder's rate; "acula" decodes only what it keeps."""
        from .io import load_audio

        max_seconds = self.seconds if self.policy == "acula" else None
        return load_audio(path, sample_rate=contract.sample_rate, max_seconds=max_seconds)

    def windows(self, wave, contract: Any):
        """(K, L) float32 windows of a 1-D waveform at the encoder's rate."""
        import numpy as np

        from . import frontend

        sr = int(contract.sample_rate)
        if self.policy == "acula":
            n = self.window_samples(contract)
            if self.padding == "zero":
                return frontend.acula_windows(wave, n_samples=n)
            wave = frontend._as_wave(wave, "acula windows")
            return (wave[:n] if wave.size >= n else frontend.repeat_pad(wave, wave, n))[None]
        if self.policy == "opera":
            return frontend.opera_windows(wave, sample_rate=sr, seconds=self.seconds)
        if self.policy == "cover":
            return cover_windows(np.asarray(wave, dtype=np.float32), self.window_samples(contract))[0]
        if self.trimming == "silence":  # OPERA: 100 ms frames, 50 ms hop
            wave, _ = frontend.trim_silence(wave, 60.0, frame_length=sr // 10, hop_length=sr // 20)
        if self.padding is not None:
            wave = pad_whole(wave, self.min_samples(contract), self.padding)
        return np.asarray(wave, dtype=np.float32)[None, :]

    def inputs(self, wave, contract: Any):
        """(K, ...) encoder inputs: the windows through the encoder's front end (log-mel or raw waveform)."""
        return front_end(self.windows(wave, contract), contract)


def front_end(windows, contract: Any):
    """(K, L) windows -> (K, T, n_mels) log-mel, or the (K, L) waveforms for encoders that take raw audio."""
    import numpy as np
    import torch

    from .frontend import logmel

    w = torch.from_numpy(np.ascontiguousarray(windows, dtype=np.float32))
    return logmel(w, sample_rate=contract.sample_rate) if contract.frontend == "logmel" else w


def pad_whole(wave, length: int, mode: str):
    """Pad a short recording to `length` samples the way OPERA's CE/CT extraction does.

    docs/protocol.md#downstream-windows
    """
    import numpy as np

    from .frontend import repeat_pad

    if wave.size >= length:
        return wave
    if mode == "repeat":  # `_duplicate_padding`: recording at the end, its tail repeated in front
        return repeat_pad(wave, wave, length)
    if mode == "zero":  # `_equally_slice_pad_sample` with one slice: tile a short clip, else zero-fill
        out = np.zeros(length, dtype=np.float32)
        reps = length // wave.size if wave.size / length < 0.5 else 1
        out[: reps * wave.size] = np.tile(wave, reps)
        return out
    raise ValueError(f"unknown pad mode {mode!r} (repeat | zero)")


def cover_windows(wave, window: int):
    """Windows covering the whole clip at hop window // 2 (the last zero-padded) and their centres in samples."""
    import numpy as np

    hop = window // 2
    n = len(wave)
    starts = np.arange(0, max(1, n - window + hop), hop) if n > window else np.array([0])
    padded = np.zeros(starts[-1] + window, dtype=np.float32)
    padded[:n] = wave
    return np.stack([padded[s:s + window] for s in starts]), starts + window / 2
