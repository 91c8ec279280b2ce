"""Bad inputs through the commands a user runs: `acula embed`, `acula align`, `acula reports build`.

Every case is generated here. The contract (docs/reliability.md): a bad file is a recorded skip with
a reason (or, with --strict, an error exit naming it), a bad manifest or metadata file is an error
exit naming the file and row, and nothing ever crashes mid-run, writes a NaN/Inf embedding or gives
a silently wrong number (a resampled or multi-channel copy of a clip embeds like the clip).
"""

from __future__ import annotations

import csv
import json
import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from acula.audio import frontend
from acula.audio.io import AudioError, load_audio
from acula.cli import main
from acula.encoders import create
from acula.extract import Embeddings, embed_files
from numerics import assert_close, encoder_tol, logmel_tol

SR = 16000
TINY = ["--encoder", "opera-gt", "--preset", "tiny"]
FREQS = (220, 700, 1900, 3100)  # whole hertz, all below 4 kHz: 1-s periodic and alias-free at 8 kHz


def clip(sr: int, seconds: float = 2.0, freqs=FREQS) -> np.ndarray:
    """Amplitude-modulated tones, band-limited so every rate >= 8 kHz holds the same sound."""
    t = np.arange(int(round(seconds * sr))) / sr
    x = sum((0.3 / (i + 1)) * np.sin(2 * np.pi * f * t + i) * (1 + 0.5 * np.sin(2 * np.pi * (i + 1) * t))
            for i, f in enumerate(freqs))
    return x.astype(np.float32)


def write(path: Path, data, sr: int = SR, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, data, sr, **kw)
    return path


def header_only_wav(path: Path) -> Path:
    fmt = struct.pack("<HHIIHH", 1, 1, SR, SR * 2, 2, 16)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", 0)
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    return path


def truncated(path: Path, keep: float, **kw) -> Path:
    full = write(path.with_name("full-" + path.name), clip(SR, 3.0), **kw)
    path.write_bytes(full.read_bytes()[: int(full.stat().st_size * keep)])
    full.unlink()
    return path


def with_sample(value: float):
    def make(path: Path) -> Path:
        x = clip(SR, 1.0)
        x[1234] = value
        return write(path, x, subtype="FLOAT")
    return make


def one_hour(path: Path) -> Path:
    """3600 s of 8 kHz int16 (57.6 MB), written block by block: the loader must decode only the head."""
    block = np.round(clip(8000, 1.0) * 32767).astype(np.int16)  # the clip is 1-s periodic
    with sf.SoundFile(path, "w", samplerate=8000, channels=1, subtype="PCM_16") as f:
        for _ in range(3600):
            f.write(block)
    return path


def in_folder(path: Path) -> Path:
    path.mkdir()
    write(path / "inside.wav", clip(SR, 1.0))  # a folder with audio in it is still not a file
    return path


OK = None
AUDIO_CASES = {
    # name: (file name, maker, None if it must embed, else words of the skip reason)
    "ok": ("ok.wav", lambda p: write(p, clip(SR)), OK),
    "zero_bytes": ("empty.wav", lambda p: (p.write_bytes(b""), p)[1], "empty file (0 bytes)"),
    "header_only_wav": ("header.wav", header_only_wav, "no samples"),
    "truncated_flac": ("cut.flac", lambda p: truncated(p, 0.5, subtype="PCM_16"), "decoding failed"),
    "truncated_wav": ("cut.wav", lambda p: truncated(p, 0.5, subtype="PCM_16"), OK),
    "text_named_wav": ("notes.wav", lambda p: (p.write_text("not audio\n" * 50), p)[1], "cannot decode as audio"),
    "random_bytes_flac": ("noise.flac", lambda p: (p.write_bytes(np.random.default_rng(0).bytes(5000)), p)[1],
                          "cannot decode as audio"),
    "all_zero": ("zeros.wav", lambda p: write(p, np.zeros(SR, np.float32)), "no signal"),
    "constant_dc": ("dc.wav", lambda p: write(p, np.full(SR, 0.25, np.float32), subtype="FLOAT"), "no signal"),
    "stereo_cancels": ("anti.wav", lambda p: write(p, np.stack([clip(SR), -clip(SR)], 1), subtype="FLOAT"),
                       "no signal"),
    "nan": ("nan.wav", with_sample(np.nan), "non-finite samples"),
    "inf": ("inf.wav", with_sample(np.inf), "non-finite samples"),
    "short_0.05s": ("short.wav", lambda p: write(p, clip(SR, 0.05)), OK),
    "one_hour_8k": ("hour.wav", one_hour, OK),
    "stereo": ("stereo.wav", lambda p: write(p, np.stack([clip(SR), clip(SR, freqs=(300, 900, 2500, 3500))], 1)), OK),
    "six_channel": ("six.wav", lambda p: write(p, np.stack([clip(SR)] * 6, 1)), OK),
    "pcm_u8": ("u8.wav", lambda p: write(p, clip(SR), subtype="PCM_U8"), OK),
    "pcm_24": ("s24.flac", lambda p: write(p, clip(SR), subtype="PCM_24"), OK),
    "float32": ("f32.wav", lambda p: write(p, clip(SR), subtype="FLOAT"), OK),
    "ogg_vorbis": ("vorbis.ogg", lambda p: write(p, clip(SR), subtype="VORBIS"), OK),
    **{f"rate_{sr}": (f"r{sr}.wav", (lambda sr: lambda p: write(p, clip(sr), sr))(sr), OK)
       for sr in (2000, 4000, 8000, 44100, 48000)},
    "clipped": ("clipped.wav", lambda p: write(p, np.clip(4 * clip(SR), -1, 1)), OK),
    "unicode_and_spaces": ("dossier à espaces/cœur ♥ sön.wav", lambda p: write(p, clip(SR)), OK),
    "missing": ("missing.wav", lambda p: p, "file not found"),
    "directory": ("folder.wav", in_folder, "is a directory"),
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bad inputs")
    return {name: make(root / fname) for name, (fname, make, _) in AUDIO_CASES.items()}


@pytest.fixture(scope="module")
def encoder():
    torch.manual_seed(0)
    return create("opera-gt", preset="tiny")


def test_the_battery_is_big_enough():
    assert len(AUDIO_CASES) >= 20
    assert sum(v[2] is None for v in AUDIO_CASES.values()) >= 10  # and not only failures


# ---------------------------------------------------------------------------------------------- embed


def test_embed_batch_records_every_bad_file_and_embeds_the_rest(corpus, tmp_path, capsys):
    # a directory argument would be searched for audio, so the folder-as-file case comes via a CSV row
    listing = tmp_path / "list.csv"
    listing.write_text(f"audio_path\n{corpus['directory']}\n")
    files = [str(p) for name, p in corpus.items() if name != "directory"] + [str(listing)]
    out = tmp_path / "emb.npz"
    assert main(["embed", *files, *TINY, "--batch-size", "4", "--out", str(out)]) == 0

    e = Embeddings.load(out)
    skipped = dict(zip(e.skipped_paths, e.skipped_reasons))
    assert len(e.paths) + len(skipped) == len(AUDIO_CASES)
    for name, (_, _, reason) in AUDIO_CASES.items():
        path = str(corpus[name])
        if reason is OK:
            assert path in e.paths, f"{name}: {skipped.get(path)}"
        else:
            assert reason in skipped[path], f"{name}: {skipped.get(path)!r}"
    assert e.embeddings.shape == (len(e.paths), 128) and e.embeddings.dtype == np.float32
    assert np.isfinite(e.embeddings).all()
    assert np.unique(e.embeddings.round(5), axis=0).shape[0] > 1  # not one constant vector
    assert e.config["policy"] == "acula" and e.config["encoder"]["preset"] == "tiny"
    printed = capsys.readouterr().out
    assert f"skipped {len(skipped)}" in printed and str(corpus["zero_bytes"]) in printed


def test_strict_stops_at_the_first_bad_file_naming_it(corpus, tmp_path, capsys):
    out = tmp_path / "strict.npz"
    files = [corpus["ok"], corpus["nan"], corpus["zero_bytes"]]
    assert main(["embed", *map(str, files), *TINY, "--strict", "--out", str(out)]) != 0
    err = capsys.readouterr().err
    assert str(corpus["nan"]) in err and "non-finite samples" in err and "Traceback" not in err
    assert not out.exists()


def test_empty_and_unreadable_input_lists_are_clean_errors(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["embed", str(tmp_path / "empty"), *TINY, "--out", str(tmp_path / "e.npz")]) == 2
    assert "no audio inputs" in capsys.readouterr().err
    bad = tmp_path / "paths.csv"
    bad.write_text("file\nx.wav\n")
    assert main(["embed", str(bad), *TINY, "--out", str(tmp_path / "e.npz")]) == 2
    err = capsys.readouterr().err
    assert "paths.csv" in err and "missing column(s) audio_path" in err
    latin = tmp_path / "latin.csv"
    latin.write_bytes("audio_path\nc\u0153ur.wav\n".encode("cp1252"))
    assert main(["embed", str(latin), *TINY, "--out", str(tmp_path / "e.npz")]) == 2
    assert "latin.csv: line 2 is not valid UTF-8" in capsys.readouterr().err


def _dist(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max())


@pytest.mark.numerics
def test_copies_of_a_clip_embed_like_the_clip(tmp_path, encoder):
    """Resampled, re-quantised and multi-channel copies must land next to the original, far from another clip."""
    x = clip(SR, 3.0)
    files = {
        "original": write(tmp_path / "orig.wav", x, subtype="FLOAT"),
        "other clip": write(tmp_path / "other.wav", clip(SR, 3.0, freqs=(300, 900, 2500, 3500)), subtype="FLOAT"),
        "stereo copy": write(tmp_path / "st.wav", np.stack([x, x], 1), subtype="FLOAT"),
        "6-channel copy": write(tmp_path / "six.wav", np.stack([x] * 6, 1), subtype="FLOAT"),
        "24-bit": write(tmp_path / "s24.wav", x, subtype="PCM_24"),
        "16-bit": write(tmp_path / "s16.wav", x, subtype="PCM_16"),
        **{f"{sr} Hz": write(tmp_path / f"r{sr}.wav", clip(sr, 3.0), sr, subtype="FLOAT")
           for sr in (8000, 22050, 44100, 48000)},
    }
    e = embed_files(encoder, [str(p) for p in files.values()], progress=False)
    assert e.paths == [str(p) for p in files.values()]
    emb = dict(zip(files, e.embeddings))
    ref, far = emb["original"], _dist(emb["other clip"], emb["original"])
    assert far > 1e-2
    np.testing.assert_array_equal(emb["stereo copy"], ref)  # (x + x) / 2 == x exactly
    # a float32 mean of 6 copies rounds the wave by a few u: then a second evaluation of front end and encoder
    assert_close(emb["6-channel copy"], ref, encoder_tol(encoder, ref, front_end=True), "6-channel copy")
    for name in ("24-bit", "16-bit", "8000 Hz", "22050 Hz", "44100 Hz", "48000 Hz"):
        assert _dist(emb[name], ref) < 0.05 * far, f"{name}: {_dist(emb[name], ref):.3g} vs other clip {far:.3g}"


def test_an_hour_long_file_embeds_like_its_first_seconds(tmp_path, corpus, encoder):
    head = write(tmp_path / "head.wav", np.round(np.tile(clip(8000, 1.0), 9) * 32767).astype(np.int16), 8000,
                 subtype="PCM_16")
    e = embed_files(encoder, [str(corpus["one_hour_8k"]), str(head)], progress=False)
    np.testing.assert_array_equal(e.embeddings[0], e.embeddings[1])


def test_whole_policy_skips_clips_the_encoder_cannot_take(corpus, tmp_path, encoder):
    """Too short (or too long) for the encoder in one pass: a skip naming the limit, not a failed batch."""
    files = [str(corpus["ok"]), str(corpus["short_0.05s"]), str(corpus["float32"])]
    e = embed_files(encoder, files, policy="whole", batch_size=8, progress=False)
    assert e.paths == [files[0], files[2]]
    assert e.skipped_paths == [files[1]] and "needs at least" in e.skipped_reasons[0]
    out = tmp_path / "whole.npz"
    assert main(["embed", *files, *TINY, "--policy", "whole", "--out", str(out)]) == 0
    assert Embeddings.load(out).config["policy"] == "whole"


def streamed_flac(path: Path, x: np.ndarray) -> Path:
    """A FLAC whose STREAMINFO says "length unknown" (total_samples = 0), as encoders reading a pipe write it."""
    write(path, x, subtype="PCM_16")
    data = bytearray(path.read_bytes())
    assert data[:4] == b"fLaC" and data[4] & 0x7F == 0  # STREAMINFO first, its 64-bit rate/channels/bits/total at 18
    fields = int.from_bytes(data[18:26], "big") & ~((1 << 36) - 1)
    data[18:26] = fields.to_bytes(8, "big")
    path.write_bytes(bytes(data))
    assert sf.info(path).frames > 2**62  # libsndfile reports "unknown" as SF_COUNT_MAX
    return path


def test_a_header_that_promises_endless_audio_is_a_skip_not_a_crash(tmp_path, corpus, encoder):
    flac = streamed_flac(tmp_path / "streamed.flac", clip(SR, 2.0))
    for policy in ("opera", "acula"):  # whole file / first 8 s
        e = embed_files(encoder, [str(flac), str(corpus["ok"])], policy=policy, progress=False)
        assert str(corpus["ok"]) in e.paths and np.isfinite(e.embeddings).all()
        assert str(flac) in e.paths + e.skipped_paths


@pytest.mark.parametrize("max_seconds", [None, 8.1875])
def test_a_flac_of_unknown_length_loads(tmp_path, max_seconds):
    x = clip(SR, 2.0)
    y = load_audio(streamed_flac(tmp_path / "streamed.flac", x), max_seconds=max_seconds)
    np.testing.assert_allclose(y, x, atol=2 / 2**15)


def test_huge_finite_samples_never_come_back_non_finite(tmp_path):
    x = np.where(np.arange(44100) % 2, 3e38, -3e38).astype(np.float32)
    files = [write(tmp_path / "stereo.wav", np.stack([x, x], 1), 44100, subtype="FLOAT"),
             write(tmp_path / "mono.wav", x, 44100, subtype="FLOAT")]
    for f in files:
        try:
            y = load_audio(f)
        except AudioError:
            continue
        assert np.isfinite(y).all(), f.name


@pytest.mark.numerics
def test_a_gain_never_changes_the_log_mel(tmp_path):
    """The front end normalises each clip by its maximum: a louder copy must give the same input, or an AudioError."""
    x = clip(SR, 3.0)
    quiet = frontend.logmel(frontend.acula_windows(load_audio(write(tmp_path / "q.wav", x, subtype="FLOAT"))))
    try:
        loud = load_audio(write(tmp_path / "loud.wav", x * 1e20, subtype="FLOAT"))
    except AudioError:
        return
    windows = frontend.acula_windows(loud)  # the gain rounds each sample by u: another float32 evaluation at most
    assert_close(frontend.logmel(windows), quiet, logmel_tol(windows), "x 1e20")


# ---------------------------------------------------------------------------------------------- align


def _manifest(path: Path, rows: list[tuple[str, str]], header: str = "audio_path,Gen_Report") -> Path:
    lines = [header] + [f'"{a}","{r}"' for a, r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _align(manifest: Path, out: Path, *extra: str) -> int:
    return main(["align", "--manifest", str(manifest), *TINY, "--epochs", "1", "--batch-size", "4",
                 "--out", str(out), *extra])


ALIGN_BAD_AUDIO = ["zero_bytes", "header_only_wav", "truncated_flac", "text_named_wav", "all_zero", "nan",
                   "missing", "directory"]


def test_align_skips_unreadable_recordings_and_lists_them(corpus, tmp_path):
    good = ["ok", "stereo", "rate_48000", "one_hour_8k", "unicode_and_spaces"]
    rows = [(corpus[n], f"Recording {i}: {n.replace('_', ' ')}, murmur grade {i % 3}.") for i, n in enumerate(good)]
    rows += [(corpus[n], f"Unreadable recording {n}.") for n in ALIGN_BAD_AUDIO]
    out = tmp_path / "run"
    assert _align(_manifest(tmp_path / "m.csv", rows), out) == 0
    skipped = {s["audio_path"]: s["reason"] for s in json.loads((out / "skipped.json").read_text())}
    assert set(skipped) == {str(corpus[n]) for n in ALIGN_BAD_AUDIO}
    for n in ALIGN_BAD_AUDIO:
        assert skipped[str(corpus[n])] and AUDIO_CASES[n][2] in skipped[str(corpus[n])]
    ck = torch.load(out / "acula_final.pt", map_location="cpu", weights_only=True)
    assert ck["step"] == 1  # 5 readable rows, batch 4: one optimiser step
    for part in ("audio_model_state_dict", "audio_projection_mlp_state_dict", "language_projection_mlp_state_dict"):
        assert all(torch.isfinite(v).all() for v in ck[part].values() if v.is_floating_point()), part
    assert (out / "encoder.safetensors").is_file()


def test_align_strict_names_the_first_unreadable_recording(corpus, tmp_path, capsys):
    rows = [(corpus["ok"], "A report."), (corpus["nan"], "Another report."), (corpus["stereo"], "A third.")]
    assert _align(_manifest(tmp_path / "m.csv", rows), tmp_path / "run", "--strict") == 2
    err = capsys.readouterr().err
    assert str(corpus["nan"]) in err and "non-finite" in err


MANIFEST_CASES = {
    # name: (CSV bytes with {ok}/{ok2} for good audio paths, words the error must contain)
    "missing_column": (b"audio_path,report\n{ok},A report.\n", "missing column(s) Gen_Report"),
    "no_columns_at_all": (b"", "missing column(s) audio_path, Gen_Report"),
    "empty_report": (b"audio_path,Gen_Report\n{ok},A report.\n{ok2},\n", "row 3 has an empty 'Gen_Report'"),
    "blank_report": (b"audio_path,Gen_Report\n{ok},   \n{ok2},A report.\n", "row 2 has an empty 'Gen_Report'"),
    "empty_audio_path": (b"audio_path,Gen_Report\n,A report.\n", "row 2 has an empty 'audio_path'"),
    "duplicate_rows": (b"audio_path,Gen_Report\n{ok},A report.\n{ok2},B.\n{ok},A report.\n",
                       "row 4 duplicates row 2"),
    "not_utf8": (b"audio_path,Gen_Report\n{ok},A report.\n{ok2},Souffle syst\xe9lique.\n",
                 "line 3 is not valid UTF-8"),
    "header_only": (b"audio_path,Gen_Report\n", "no rows"),
    "nothing_readable": (b"audio_path,Gen_Report\n{zero},A report.\n{nan},B report.\n",
                         "only 0 of 2 recordings are readable"),
    "one_readable": (b"audio_path,Gen_Report\n{ok},A report.\n{nan},B report.\n", "only 1 of 2 recordings"),
}


@pytest.mark.parametrize("case", list(MANIFEST_CASES))
def test_align_refuses_a_bad_manifest_naming_file_and_row(case, corpus, tmp_path, capsys):
    text, words = MANIFEST_CASES[case]
    fill = {"ok": corpus["ok"], "ok2": corpus["stereo"], "zero": corpus["zero_bytes"], "nan": corpus["nan"]}
    for k, v in fill.items():
        text = text.replace(b"{%s}" % k.encode(), str(v).encode())
    manifest = tmp_path / f"{case}.csv"
    manifest.write_bytes(text)
    out = tmp_path / "run"
    assert _align(manifest, out) == 2
    err = capsys.readouterr().err
    assert f"{case}.csv" in err and words in err, err
    assert not (out / "acula_final.pt").exists()


def test_align_missing_manifest(tmp_path, capsys):
    assert _align(tmp_path / "nope.csv", tmp_path / "run") == 2
    assert "nope.csv: manifest not found" in capsys.readouterr().err


# --------------------------------------------------------------------------------------- reports build

COUGHVID = "uuid,status,age,gender\n"
REPORT_CASES = {
    # name: (file content (str, bytes, or None for "does not exist"; "DIR" = empty folder), error words)
    "missing_file": (None, "no such file or folder"),
    "empty_folder": ("DIR", "folder holds no file matching"),
    "empty_file": ("", "empty file"),
    "missing_columns": ("uuid,age\nu1,30\n", "missing column(s) 'status', 'gender'"),
    "binary_garbage": (np.random.default_rng(1).bytes(3000), "missing column(s)"),
}


@pytest.mark.parametrize("case", list(REPORT_CASES))
def test_reports_build_refuses_bad_metadata(case, tmp_path, capsys):
    content, words = REPORT_CASES[case]
    meta = tmp_path / f"{case}.csv"
    if content == "DIR":
        meta.mkdir()
    elif isinstance(content, bytes):
        meta.write_bytes(content)
    elif content is not None:
        meta.write_text(content)
    out = tmp_path / "reports.csv"
    assert main(["reports", "build", "--dataset", "coughvid", "--metadata", str(meta), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{case}.csv" in err and words in err, err
    assert not out.exists()


def test_reports_build_skips_duplicates_and_empty_records_and_reads_latin1(tmp_path, capsys):
    meta = tmp_path / "meta.csv"
    rows = "u1,healthy,30,male\nu2,COVID-19,41,female\nu1,healthy,30,male\nu3,,,\nu4,symptomatic,25,m\xe4le\n"
    meta.write_bytes((COUGHVID + rows).encode("latin-1"))
    out = tmp_path / "reports.csv"
    assert main(["reports", "build", "--dataset", "coughvid", "--metadata", str(meta), "--out", str(out)]) == 0
    assert "3 reports written, 2 rows skipped (1 duplicate record id; 1 no status" in capsys.readouterr().out
    text = out.read_text(encoding="utf-8")
    assert "m\u00e4le" in text  # decoded, not mojibake
    assert [line.split(",")[0] for line in text.splitlines()[1:]] == ["u1", "u2", "u4"]


def test_strict_in_bench_and_reports(tmp_path, capsys, shared_dir):
    """bench and reports build leave bad rows out with a note, or with --strict fail naming one."""
    rows = [{"audio_path": str(write(tmp_path / "a" / f"{i}.wav", clip(SR, 1.0, freqs=FREQS[: 1 + i % 2]))),
             "label": "xy"[i % 2], "split": {6: "val", 7: "val", 8: "test", 9: "test"}.get(i, "train")}
            for i in range(12)]
    rows.append({"audio_path": str(with_sample(float("nan"))(tmp_path / "a" / "nan.wav")), "label": "x",
                 "split": "train"})
    task_csv = tmp_path / "task.csv"
    with open(task_csv, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["audio_path", "label", "split"])
        w.writeheader()
        w.writerows(rows)
    args = ["--encoder", "opera-gt", "--preset", "tiny", "--task-csv", str(task_csv), "--seeds", "1", "--epochs", "1",
            "--no-progress"]
    assert main(["bench", *args, "--out", str(tmp_path / "lenient")]) == 0
    assert "could not be embedded" in (tmp_path / "lenient" / "results.md").read_text()
    assert main(["bench", *args, "--strict", "--out", str(tmp_path / "strict")]) != 0
    with open(tmp_path / "strict" / "results.csv") as f:
        (row,) = csv.DictReader(f)
    assert row["status"] == "error" and "--strict" in row["error"] and "nan.wav" in row["error"]

    src = shared_dir / "metadata" / "coughvid" / "metadata_compiled.csv"
    meta = tmp_path / "coughvid.csv"  # the head of the real table: some rows have nothing to report
    meta.write_text("".join(src.read_text(encoding="utf-8").splitlines(keepends=True)[:41]), encoding="utf-8")
    out = tmp_path / "reports.csv"
    capsys.readouterr()
    assert main(["reports", "build", "--dataset", "coughvid", "--metadata", str(meta), "--out", str(out)]) == 0
    assert "rows skipped" in capsys.readouterr().out and out.exists()
    out.unlink()
    rc = main(["reports", "build", "--dataset", "coughvid", "--metadata", str(meta), "--strict", "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and "--strict" in err and "no status, symptoms or cough type" in err and not out.exists()
