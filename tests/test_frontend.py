"""The log-mel front end and window policies against librosa, the golden file and SPEC §1.1 / §1.3."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from acula.audio import (
    POLICIES,
    LogMel,
    acula_windows,
    fingerprint,
    frames_for,
    get_policy,
    load_audio,
    logmel,
    mel_filterbank,
    opera_windows,
    resample,
    trim_silence,
)

from numerics import assert_close, logmel_tol

librosa = pytest.importorskip("librosa")
HEART = "data/heart-yaseen/N/New_N_001.wav"
pytestmark = pytest.mark.numerics


def librosa_logmel(wave: np.ndarray) -> np.ndarray:
    """OPERA `pre_process_audio_mel_t(f_max=8000)`, with a flat clip mapped to zeros."""
    S = librosa.feature.melspectrogram(y=wave, sr=16000, n_mels=64, fmin=50, fmax=8000, n_fft=1024, hop_length=512)
    S = librosa.power_to_db(S, ref=np.max)
    return ((S - S.min()) / (S.max() - S.min())).T


def noisy_clip(rng: np.random.Generator, n: int, amplitude: float) -> np.ndarray:
    """Noise + a tone + a near-silent stretch, so the 80 dB floor and the mel edges both matter."""
    t = np.arange(n) / 16000
    x = rng.standard_normal(n) * 0.3 + np.sin(2 * np.pi * 440 * t) + 0.5 * np.sin(2 * np.pi * 6000 * t)
    x[: n // 3] *= 1e-4
    return (amplitude * x).astype(np.float32)


# ------------------------------------------------------------------------------------------------ log-mel


def test_golden_logmel(golden_dir):
    wave = np.load(golden_dir / "frontend_input_16k.npy")
    want = np.load(golden_dir / "frontend_logmel.npy")
    got = LogMel()(torch.from_numpy(wave))
    assert got.shape == (1, 256, 64) and got.dtype == torch.float32
    assert_close(got[0], want, logmel_tol(wave)[: len(want)], "vs OPERA's librosa log-mel")


@pytest.mark.parametrize("args", [(16000, 1024, 64, 50, 8000), (22050, 2048, 128, 0, 11025), (8000, 400, 40, 20, 3000)])
def test_filterbank_is_librosa_exactly(args):
    sr, n_fft, n_mels, fmin, fmax = args
    want = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax)
    np.testing.assert_array_equal(mel_filterbank(sr, n_fft, n_mels, fmin, fmax), want)


@pytest.mark.filterwarnings("ignore:n_fft=1024 is too large")  # librosa, on the 700-sample clip
@pytest.mark.parametrize("n,amplitude", [(131000, 1.0), (50000, 1e-5), (16001, 300.0), (700, 0.1)])
def test_matches_librosa_random(n, amplitude):
    x = noisy_clip(np.random.default_rng(n), n, amplitude)
    got = logmel(x)[0].numpy()
    assert_close(got, librosa_logmel(x), logmel_tol(x), "vs librosa")


def test_matches_librosa_heart_sound(shared_dir):
    x = load_audio(shared_dir / HEART)
    want = librosa_logmel(x)
    got = logmel(x)[0].numpy()
    assert got.shape == want.shape == (frames_for(x.size), 64)
    assert_close(got, want, logmel_tol(x), "vs librosa")


SPEC_FRAMES = [(16000, 32), (32000, 63), (80000, 157), (128000, 251), (130880, 256), (131000, 256)]  # SPEC §1.1


@pytest.mark.parametrize("n,frames", SPEC_FRAMES)
def test_frame_counts(n, frames):
    assert frames_for(n) == frames == LogMel().frames_for(n)
    assert logmel(np.zeros(n, np.float32)).shape == (1, frames, 64)


def test_batch_equals_one_at_a_time():
    rng = np.random.default_rng(0)
    x = np.stack([noisy_clip(rng, 20000, a) for a in (1e-6, 1.0, 1e3, 0.02)])
    m = LogMel()
    batch = m(torch.from_numpy(x))
    for i in range(len(x)):
        assert_close(batch[i], m(torch.from_numpy(x[i]))[0], logmel_tol(x[i]), "alone vs in a batch")


@pytest.mark.parametrize("gain", [2.0**31, 2.0**40, 1e17, 1e20, 2.0**100, 3e38 / 6])
def test_a_gain_never_changes_the_log_mel(gain):
    """Float32 power overflows for peaks above ~3.6e16: loud clips are scaled down first (ref=max makes dB
    relative), so a mis-scaled float file gives the clip's own log-mel, not zeros."""
    x = noisy_clip(np.random.default_rng(4), 20000, 1.0)  # peak ~ 3.4
    want = logmel(x)
    loud = (x.astype(np.float64) * gain).astype(np.float32)
    assert np.isfinite(loud).all()
    got = logmel(loud)
    assert torch.isfinite(got).all() and got.max() == 1
    # the gain itself is exact (a power of two) or rounds each sample by u: another float32 evaluation, at most
    assert_close(got, want, logmel_tol(x), "with a gain")
    huge64 = torch.from_numpy(x.astype(np.float64) * 1e300)  # beyond float32 range, fine as a float64 input
    assert_close(logmel(huge64), want, logmel_tol(x), "float64 beyond float32 range")


def test_loud_rows_leave_the_batch_alone():
    rng = np.random.default_rng(6)
    x = np.stack([noisy_clip(rng, 20000, a) for a in (1e-6, 1.0, 1e20, 3e37)])
    m = LogMel()
    batch = m(torch.from_numpy(x))
    for i in range(len(x)):
        assert torch.equal(batch[i], m(torch.from_numpy(x[i]))[0])
    assert batch.amax(dim=(1, 2)).tolist() == [1, 1, 1, 1]


def test_flat_clip_gives_zeros_and_leaves_others_alone():
    x = np.stack([np.zeros(5000, np.float32), noisy_clip(np.random.default_rng(1), 5000, 1.0)])
    out = logmel(x)
    assert torch.isfinite(out).all()
    assert out[0].abs().max() == 0
    assert out[1].min() == 0 and out[1].max() == 1


def test_module_config_buffers_and_errors():
    m = LogMel()
    assert m.n_mels == 64 and m.hop_length == 512 and m.fmax == 8000.0
    assert m.mel_fb.shape == (64, 513) and m.window.shape == (1024,)
    assert m.state_dict() == {}  # recomputed from the config, never stored in checkpoints
    with pytest.raises(ValueError, match="fmax"):
        LogMel(sample_rate=8000)  # fmax 8000 above Nyquist
    with pytest.raises(ValueError, match=r"\(batch, samples\)"):
        m(torch.zeros(2, 3, 4))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n_src=st.integers(1, 30000),
    sr=st.sampled_from([2000, 8000, 11025, 16000, 22050, 44100, 48000]),
    log_amp=st.floats(-6, 3),
    seed=st.integers(0, 2**31 - 1),
    kind=st.sampled_from(["noise", "tone", "impulse", "dc"]),
)
def test_property_finite_unit_range(n_src, sr, log_amp, seed, kind):
    rng = np.random.default_rng(seed)
    if kind == "noise":
        x = rng.standard_normal(n_src)
    elif kind == "tone":
        x = np.sin(2 * np.pi * rng.uniform(20, sr / 2) * np.arange(n_src) / sr)
    elif kind == "impulse":
        x = np.zeros(n_src)
        x[rng.integers(n_src)] = 1.0
    else:
        x = np.ones(n_src)
    wave = resample((10.0**log_amp * x).astype(np.float32), sr, 16000)
    if wave.size == 0:  # e.g. 1 sample at 48 kHz
        return
    batch = np.stack([wave, wave[::-1]])
    out = logmel(batch)
    assert out.shape == (2, 1 + wave.size // 512, 64)
    assert torch.isfinite(out).all()
    assert out.min() >= 0 and out.max() <= 1


# ------------------------------------------------------------------------------------------------ trimming


def _bursty(rng, n, a, b, floor=1e-5):
    x = (rng.standard_normal(n) * floor).astype(np.float32)
    x[a:b] += (rng.standard_normal(b - a) * 0.3).astype(np.float32)
    return x


@pytest.mark.parametrize("case", ["burst", "full", "zeros", "tiny", "dc", "late", "gaussian_tone"])
def test_trim_matches_librosa(case):
    rng = np.random.default_rng(7)
    t = np.arange(32000) / 16000
    x = {
        "burst": lambda: _bursty(rng, 48000, 10000, 30000),
        "full": lambda: _bursty(rng, 40000, 0, 40000),
        "zeros": lambda: np.zeros(5000, np.float32),
        "tiny": lambda: _bursty(rng, 100, 10, 50),
        "dc": lambda: np.ones(3000, np.float32),
        "late": lambda: _bursty(rng, 160000, 50001, 90017),
        "gaussian_tone": lambda: (np.sin(2 * np.pi * 300 * t) * np.exp(-((t - 1) ** 2) / 0.01)).astype(np.float32),
    }[case]()
    want, (a, b) = librosa.effects.trim(x, top_db=60, frame_length=1600, hop_length=800)
    got, span = trim_silence(x)
    assert span == (a, b)
    np.testing.assert_array_equal(got, want)


# ------------------------------------------------------------------------------------------------ windows


def opera_split_pad_reference(y: np.ndarray, seconds: float, sr: int = 16000) -> np.ndarray:
    """SPEC §1.3 `split_pad_sample(types="repeat")` written the way OPERA does it (frame + doubling loop)."""

    def duplicate_padding(sample, source, length):
        copy = np.zeros(length, dtype=np.float32)
        left = length - len(source)
        aug = sample
        while len(aug) < left:
            aug = np.concatenate([aug, aug])
        copy[left:] = source
        copy[:left] = aug[len(aug) - left:]
        return copy

    length = int(seconds * sr)
    if len(y) <= length:
        return duplicate_padding(y, y, length)[None]
    frames = librosa.util.frame(y, frame_length=length, hop_length=length // 2, axis=0)
    last = duplicate_padding(y, y[frames.shape[0] * (length // 2):], length)
    return np.concatenate([frames, last[None]])


def test_opera_19s_ramp():
    ramp = np.arange(1, 19 * 16000 + 1, dtype=np.float32)  # no silence: trimming keeps it whole
    w = opera_windows(ramp, seconds=8)
    assert w.shape == (4, 128000) and w.dtype == np.float32
    np.testing.assert_array_equal(w[:, 0], [1, 64001, 128001, 288001])
    for i in range(3):
        np.testing.assert_array_equal(w[i], ramp[i * 64000: i * 64000 + 128000])
    # last chunk = [last 1 s of the clip | 12 s -> end]
    np.testing.assert_array_equal(w[3], np.concatenate([ramp[-16000:], ramp[12 * 16000:]]))


@pytest.mark.parametrize("n", [1, 3, 1000, 40000, 130880, 130881, 196320, 300000, 500123])
def test_opera_windows_match_reference(n):
    rng = np.random.default_rng(n)
    x = (rng.standard_normal(n) * 0.1).astype(np.float32) + 0.5  # loud throughout, so trim is a no-op
    state = random.getstate()
    got = opera_windows(x)
    assert random.getstate() == state  # OPERA re-seeds the global RNG; we must not
    want = opera_split_pad_reference(x, 8.18)
    assert got.shape == want.shape and got.shape[1] == 130880
    np.testing.assert_array_equal(got, want)
    assert all(frames_for(w.size) == 256 for w in got)


def test_opera_windows_trim_first_and_errors():
    rng = np.random.default_rng(3)
    core = (rng.standard_normal(20000) * 0.2).astype(np.float32)
    padded = np.concatenate([np.zeros(40000, np.float32), core, np.zeros(40000, np.float32)])
    trimmed, (a, b) = trim_silence(padded)
    assert a <= 40000 < 60000 <= b and b - a < 24000  # silence gone up to the 50 ms frame grid
    np.testing.assert_array_equal(opera_windows(padded), opera_split_pad_reference(trimmed, 8.18))
    with pytest.raises(ValueError, match="empty"):
        opera_windows(np.zeros(0, np.float32))
    with pytest.raises(ValueError, match="1-D"):
        opera_windows(np.zeros((2, 100), np.float32))
    with pytest.raises(ValueError, match="NaN"):
        opera_windows(np.full(100, np.nan, np.float32))


def test_acula_windows():
    x = np.arange(1, 200001, dtype=np.float32)
    w = acula_windows(x)
    assert w.shape == (1, 131000) and w.dtype == np.float32
    np.testing.assert_array_equal(w[0], x[:131000])
    short = acula_windows(x[:1000])
    np.testing.assert_array_equal(short[0, :1000], x[:1000])
    assert not short[0, 1000:].any()
    assert acula_windows(x, n_samples=16000).shape == (1, 16000)


def test_policies():
    assert set(POLICIES) == {"acula", "opera"}
    assert get_policy("acula") is acula_windows and get_policy("opera") is opera_windows
    with pytest.raises(ValueError, match="unknown window policy 'nope'"):
        get_policy("nope")
    x = noisy_clip(np.random.default_rng(5), 300000, 1.0)
    for name in POLICIES:  # every policy's windows give 256-frame log-mels
        assert logmel(get_policy(name)(x)).shape[1:] == (256, 64)


def test_fingerprint():
    base = fingerprint()
    assert len(base) == 16 and int(base, 16) >= 0
    assert fingerprint() == base == fingerprint(fmin=50, sample_rate=16000.0, policy="acula", window_samples=131000)
    changed = [fingerprint(sample_rate=8000), fingerprint(n_fft=512), fingerprint(hop_length=256),
               fingerprint(n_mels=128), fingerprint(fmin=0), fingerprint(fmax=4000), fingerprint(policy="opera"),
               fingerprint(window_samples=128000), fingerprint(version=999), fingerprint(encoder="opera-gt")]
    assert len(set(changed) | {base}) == len(changed) + 1
    with pytest.raises(ValueError, match="window_samples"):
        fingerprint(policy="custom")
