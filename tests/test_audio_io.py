"""Every row of the table in acula/audio/io.py: loads correctly, or AudioError naming the file and the reason."""

from __future__ import annotations

import pickle
import struct

import numpy as np
import pytest
import soundfile as sf

from acula.audio import AudioError, audio_info, load_audio
from acula.audio import io as audio_io
from numerics import U32, Shape, assert_close, reorder_tol, scale_of

SR = 16000


def tone(seconds: float, sr: int, freq: float = 440.0, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(seconds * sr))) / sr
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def peak_hz(wave: np.ndarray, sr: int = SR) -> float:
    spectrum = np.abs(np.fft.rfft(wave * np.hanning(wave.size)))
    return float(np.argmax(spectrum) * sr / wave.size)


def write(path, data, sr=SR, **kw):
    sf.write(path, data, sr, **kw)
    return path


def header_only_wav(path):
    """A valid 44-byte PCM_16 WAV header whose data chunk is empty, written byte by byte."""
    fmt = struct.pack("<HHIIHH", 1, 1, SR, SR * 2, 2, 16)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", 0)
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    return path


def truncated(path, src, keep: float):
    data = src.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def _nonfinite(value):
    def make(p):
        x = tone(1.0, SR)
        x[1234] = value
        return write(p, x, subtype="FLOAT")
    return make


ERROR_CASES = {
    # name: (file name, how to make it, expected words in the reason)
    "missing": ("missing.wav", lambda p: p, "file not found"),
    "directory": ("folder.wav", lambda p: (p.mkdir(), p)[1], "is a directory"),
    "zero_bytes": ("empty.wav", lambda p: (p.write_bytes(b""), p)[1], "empty file (0 bytes)"),
    "header_only_wav": ("header.wav", header_only_wav, "no samples"),
    "text_named_wav": ("notes.wav", lambda p: (p.write_text("not audio\n" * 20), p)[1], "cannot decode as audio"),
    "truncated_flac": ("cut.flac",
                       lambda p: truncated(p, write(p.with_name("full.flac"), tone(3.0, SR), subtype="PCM_16"), 0.5),
                       "decoding failed"),
    "all_zero": ("zeros.wav", lambda p: write(p, np.zeros(SR, np.float32)), "no signal"),
    "constant_dc": ("dc.wav", lambda p: write(p, np.full(SR, 0.25, np.float32), subtype="FLOAT"), "no signal"),
    "stereo_cancels": ("anti.wav", lambda p: write(p, np.stack([tone(1, SR), -tone(1, SR)], 1), subtype="FLOAT"),
                       "no signal"),
    "rate_2hz": ("slow.wav", lambda p: write(p, tone(1.0, SR), 2), "implausible sample rate 2 Hz"),
    "rate_999hz": ("slow999.wav", lambda p: write(p, tone(1.0, 999), 999), "implausible sample rate 999 Hz"),
    "huge_square": ("square.wav", lambda p: write(p, np.sign(tone(1.0, 44100, 100.0)) * np.float32(3.3e38), 44100,
                                                  subtype="FLOAT"), "exceeds the float32 range"),
    "nan": ("nan.wav", _nonfinite(np.nan), "non-finite samples (NaN/Inf)"),
    "inf": ("inf.wav", _nonfinite(np.inf), "non-finite samples (NaN/Inf)"),
}


@pytest.mark.parametrize("case", list(ERROR_CASES))
def test_bad_files_raise_audio_error(tmp_path, case):
    name, make, reason = ERROR_CASES[case]
    path = make(tmp_path / name)
    with pytest.raises(AudioError) as info:
        load_audio(path)
    err = info.value
    assert isinstance(err, ValueError)
    assert err.path == str(path) and str(err).startswith(f"{path}: ")
    assert name in str(err) and reason in err.reason


def test_audio_error_pickles():
    err = pickle.loads(pickle.dumps(AudioError("a b.wav", "no signal")))
    assert (err.path, err.reason, str(err)) == ("a b.wav", "no signal", "a b.wav: no signal")


def test_truncated_wav_keeps_the_readable_part(tmp_path):
    x = tone(2.0, SR)
    cut = truncated(tmp_path / "cut.wav", write(tmp_path / "full.wav", x, subtype="PCM_16"), 0.25)
    y = load_audio(cut)  # libsndfile returns the frames present without error
    assert 0 < y.size < x.size
    np.testing.assert_allclose(y, x[: y.size], atol=1 / 32768)


# one quantisation step of the format's full scale [-1, 1); PCM_32 also rounds the read value to float32 (|x| < 2)
@pytest.mark.parametrize("subtype,atol", [("PCM_U8", 2 / 256), ("PCM_16", 2 / 2**16), ("PCM_24", 2 / 2**24),
                                          ("PCM_32", 2 / 2**32 + 2 * U32), ("FLOAT", 0.0), ("DOUBLE", 0.0)])
def test_sample_formats(tmp_path, subtype, atol):
    x = tone(0.5, SR) + np.random.default_rng(0).uniform(-0.3, 0.3, SR // 2).astype(np.float32)
    y = load_audio(write(tmp_path / f"{subtype}.wav", x, subtype=subtype))
    assert y.dtype == np.float32 and y.shape == x.shape
    np.testing.assert_allclose(y, x, atol=atol, rtol=0)


@pytest.mark.numerics
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # audioread, imported by librosa
@pytest.mark.parametrize("sr", [2000, 4000, 8000, 44100, 48000])
def test_sample_rates_resample_to_16k(tmp_path, sr):
    path = write(tmp_path / f"tone_{sr}.wav", tone(2.0, sr), sr, subtype="PCM_16")
    y = load_audio(path)
    assert abs(y.size - 2.0 * SR) <= 1
    assert abs(peak_hz(y) - 440.0) <= 1.0
    librosa = pytest.importorskip("librosa")
    want, _ = librosa.load(path, sr=SR)  # the reference pipeline's loader
    np.testing.assert_array_equal(y, want)  # the same soxr "HQ" call on the same decoded samples: bit for bit


def test_ogg(tmp_path):
    path = write(tmp_path / "tone.ogg", tone(2.0, 22050), 22050, format="OGG", subtype="VORBIS")
    y = load_audio(path)
    assert abs(y.size - 2.0 * SR) <= 1 and abs(peak_hz(y) - 440.0) <= 1.0


def test_short_clip(tmp_path):
    assert load_audio(write(tmp_path / "short.wav", tone(0.05, SR))).size == 800
    assert abs(load_audio(write(tmp_path / "short8k.wav", tone(0.05, 8000), 8000)).size - 800) <= 1


@pytest.mark.numerics
def test_multichannel_is_channel_mean(tmp_path):
    rng = np.random.default_rng(1)
    stereo = np.stack([tone(1.0, SR), rng.uniform(-0.2, 0.2, SR).astype(np.float32)], axis=1)
    six = rng.uniform(-0.5, 0.5, (SR, 6)).astype(np.float32) * np.linspace(0.1, 1.0, 6, dtype=np.float32)
    for name, x in (("stereo.wav", stereo), ("six.wav", six)):
        y = load_audio(write(tmp_path / name, x, subtype="FLOAT"))
        assert y.ndim == 1
        assert_close(y, x.mean(axis=1), reorder_tol(scale_of(x), Shape(1, x.shape[1])), name)  # float32 means
    assert audio_info(tmp_path / "six.wav").channels == 6


def test_clipped_audio_loads_unchanged(tmp_path):
    x = np.clip(4 * tone(1.0, SR), -1.0, 1.0)
    y = load_audio(write(tmp_path / "clipped.wav", x, subtype="PCM_16"))
    assert y.max() >= 32767 / 32768 and y.min() == -1.0
    assert np.mean(np.abs(y) > 0.999) > 0.5  # most of the clip sits on the rails
    hot = load_audio(write(tmp_path / "hot.wav", 3 * tone(1.0, SR), subtype="FLOAT"))
    assert hot.max() > 1.4  # float files are not clipped on load


def test_unicode_and_spaces_in_path(tmp_path):
    folder = tmp_path / "mit Leerzeichen ünd ♥"
    folder.mkdir()
    path = write(folder / "Herz tön 01 – 心音.wav", tone(1.0, SR))
    assert load_audio(path).size == SR
    with pytest.raises(AudioError, match="Herz tön 02 – 心音.wav: file not found"):
        load_audio(folder / "Herz tön 02 – 心音.wav")


@pytest.mark.numerics
def test_max_seconds_reads_only_the_start(tmp_path, monkeypatch):
    sr, seconds = 44100, 60.0
    rng = np.random.default_rng(2)
    x = tone(seconds, sr) + rng.uniform(-0.1, 0.1, int(seconds * sr)).astype(np.float32)
    path = write(tmp_path / "long.wav", x, sr, subtype="PCM_16")
    full = load_audio(path)
    decoded = []
    read = audio_io._read_into
    monkeypatch.setattr(audio_io, "_read_into", lambda f, out: (decoded.append(read(f, out)), decoded[-1])[1])
    window = 131000 / SR  # the AcuLa window, 8.1875 s
    y = load_audio(path, max_seconds=window)
    assert y.size == 131000
    assert 0 < sum(decoded) < 0.2 * x.size  # decoded about 8.3 s of 60
    # the margin hides the cut from the resampler: each output sums at most the margin's input samples
    margin = Shape(2, int(audio_io._RESAMPLE_MARGIN_S * sr))  # (a longer filter would see the cut), in 2 stages
    assert_close(y, full[:131000], reorder_tol(scale_of(full), margin), "first 8.19 s vs whole file")
    assert load_audio(path, max_seconds=1000).size == full.size


def test_max_seconds_checks_only_what_it_reads(tmp_path):
    x = np.concatenate([np.zeros(3 * SR, np.float32), tone(3.0, SR)])
    path = write(tmp_path / "late.wav", x, subtype="FLOAT")
    assert load_audio(path).size == x.size
    with pytest.raises(AudioError, match="no signal in the first 2"):
        load_audio(path, max_seconds=2)


def test_lowest_plausible_rate_loads(tmp_path):
    y = load_audio(write(tmp_path / "1k.wav", tone(1.0, 1000, freq=100.0), 1000, subtype="PCM_16"))
    assert abs(y.size - SR) <= 1 and abs(peak_hz(y) - 100.0) <= 1.0


def flac_with_length(path, x, total_samples: int, sr=SR):
    """A PCM_16 FLAC whose STREAMINFO claims `total_samples` frames (0 = unknown, as encoders reading a pipe
    write it; the field has 36 bits)."""
    write(path, x, sr, subtype="PCM_16")
    data = bytearray(path.read_bytes())
    fields = int.from_bytes(data[18:26], "big") & ~((1 << 36) - 1)  # rate, channels, bits, then the 36-bit total
    data[18:26] = (fields | total_samples).to_bytes(8, "big")
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("max_seconds", [None, 0.5, 2.0, 100.0])
def test_flac_of_unknown_length_reads_to_its_end(tmp_path, monkeypatch, max_seconds):
    """Several decode blocks, the last one partial: every frame comes back, none is invented."""
    monkeypatch.setattr(audio_io, "_BLOCK_SAMPLES", 5000)
    x = tone(1.7, SR, amplitude=0.8)
    path = flac_with_length(tmp_path / "s.flac", x, 0)
    assert sf.info(path).frames > 2**62  # libsndfile's "unknown"
    y = load_audio(path, max_seconds=max_seconds)
    n = x.size if max_seconds is None else min(x.size, int(max_seconds * SR))
    assert y.size == n
    np.testing.assert_allclose(y, x[:n], atol=1 / 2**15)


def test_header_promising_more_frames_than_present(tmp_path):
    """6.9e10 frames promised (256 GiB as float32): only what is there is decoded, so memory follows the file."""
    x = tone(0.5, SR)
    path = flac_with_length(tmp_path / "liar.flac", x, 2**36 - 1)
    assert sf.info(path).frames == 2**36 - 1
    np.testing.assert_allclose(load_audio(path), x, atol=1 / 2**15)
    np.testing.assert_allclose(load_audio(path, max_seconds=8.1875), x, atol=1 / 2**15)


def test_huge_finite_samples_keep_their_scale(tmp_path):
    """Samples near the float32 limit: mixed in float64 and resampled at a power-of-two scale, so the result is
    the quiet clip's, times the gain (load_audio returns raw amplitude)."""
    gain = np.float32(2.0**126)  # a power of two: the scaled file holds exactly gain * x
    x = np.stack([tone(1.0, 44100, amplitude=0.9), tone(1.0, 44100, 1000.0, amplitude=0.9)], axis=1)
    quiet = load_audio(write(tmp_path / "quiet.wav", x, 44100, subtype="FLOAT"))
    loud = load_audio(write(tmp_path / "loud.wav", x * gain, 44100, subtype="FLOAT"))
    assert np.isfinite(loud).all() and np.abs(loud).max() > 1e37
    np.testing.assert_array_equal(loud, quiet * gain)


def test_resample_of_huge_values_is_exactly_scaled():
    rng = np.random.default_rng(3)
    x = rng.uniform(-0.5, 0.5, 4410).astype(np.float32)
    for gain in (2.0**60, 2.0**100, 2.0**127):
        y = audio_io.resample(x * np.float32(gain), 44100, 16000)
        np.testing.assert_array_equal(y, audio_io.resample(x, 44100, 16000) * np.float32(gain))


def test_audio_info(tmp_path):
    path = write(tmp_path / "info.flac", np.zeros((22050, 2), np.float32) + 0.1, 44100, subtype="PCM_24")
    info = audio_info(path)
    assert (info.sample_rate, info.channels, info.frames, info.duration) == (44100, 2, 22050, 0.5)
    assert info.format == "FLAC" and info.to_dict()["subtype"] == "PCM_24"
    bad = tmp_path / "bad.wav"
    bad.write_text("not audio")
    with pytest.raises(AudioError, match="bad.wav: cannot decode"):
        audio_info(bad)


def test_bad_arguments(tmp_path):
    path = write(tmp_path / "ok.wav", tone(0.1, SR))
    with pytest.raises(ValueError, match="sample_rate"):
        load_audio(path, sample_rate=0)
    with pytest.raises(ValueError, match="max_seconds"):
        load_audio(path, max_seconds=0)


def test_reproduces_golden_frontend_input(shared_dir, golden_dir):
    y = load_audio(shared_dir / "data/heart-yaseen/N/New_N_001.wav")  # 8 kHz PCM_16
    want = np.load(golden_dir / "frontend_input_16k.npy")
    n = min(y.size, want.size)
    np.testing.assert_array_equal(y[:n], want[:n])
    assert not want[n:].any()
