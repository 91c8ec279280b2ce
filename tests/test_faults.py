"""Faults: SIGKILL mid-run, then the same command again, must end exactly where an uninterrupted run ends.

Alignment training (`acula align`) and embedding extraction (`embed_files(resume_dir=...)`) are
killed for real in a subprocess. The feature cache has its own kill test (tests/test_features.py).
Resuming only works if nothing is ever half-written, so the last test checks statically that every
file the package writes goes through `acula._io.atomic_path`.
"""

from __future__ import annotations

import ast
import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import acula
import acula.extract as extract
from acula.audio.io import AudioError
from acula.cli import main
from acula.encoders import create
from acula.encoders.checkpoint import save_encoder
from acula.extract import Embeddings, embed_files

SR = 16000
ENV = {**os.environ, "TQDM_DISABLE": "1", "OMP_NUM_THREADS": "2"}


def tones(folder: Path, n: int, seconds: float = 1.0) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * SR)) / SR
    paths = []
    for i in range(n):
        x = 0.3 * np.sin(2 * np.pi * (150 + 60 * i) * t) * (1 + 0.5 * np.sin(2 * np.pi * (1 + i % 3) * t))
        paths.append(folder / f"clip{i:02d}.wav")
        sf.write(paths[-1], x.astype(np.float32), SR)
    return [str(p) for p in paths]


def kill_when(proc: subprocess.Popen, ready, what: str, timeout: float = 240.0) -> None:
    """SIGKILL `proc` as soon as `ready()` holds; fail if it ended first."""
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, f"the run ended (rc {proc.returncode}) before {what}"
        assert time.monotonic() < deadline, f"no {what} after {timeout} s"
        time.sleep(0.02)
    assert proc.poll() is None, f"the run ended before it could be killed after {what}"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL


def assert_same(a, b, where: str = "checkpoint") -> None:
    """Bitwise equality of nested dicts/lists of tensors and plain values."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape, where
        assert torch.equal(a, b), f"{where} differs (max |diff| {(a.double() - b.double()).abs().max():.3g})"
    elif isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), f"{where}: keys {sorted(set(a) ^ set(b))}"
        for k in a:
            assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


# ------------------------------------------------------------------------------------- alignment


def test_align_killed_mid_run_resumes_to_the_uninterrupted_weights(tmp_path):
    clips = tones(tmp_path / "audio", 6, seconds=2.0)
    manifest = tmp_path / "manifest.csv"
    with open(manifest, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["audio_path", "Gen_Report"])
        w.writerows([p, f"Recording {i}: a grade {i % 3} murmur, heart rate {60 + 7 * i} bpm."]
                    for i, p in enumerate(clips))

    def command(out: Path) -> list[str]:
        return [sys.executable, "-m", "acula.cli", "align", "--manifest", str(manifest), "--encoder", "opera-gt",
                "--preset", "tiny", "--teacher", "minilm", "--epochs", "1", "--batch-size", "2", "--seed", "3",
                "--save-every-steps", "1", "--out", str(out)]

    ref, out = tmp_path / "uninterrupted", tmp_path / "killed"
    with open(tmp_path / "ref.log", "w") as ref_log, open(tmp_path / "killed.log", "w") as log:
        reference = subprocess.Popen(command(ref), env=ENV, stdout=ref_log, stderr=subprocess.STDOUT)
        proc = subprocess.Popen(command(out), env=ENV, stdout=log, stderr=subprocess.STDOUT)
        kill_when(proc, lambda: (out / "checkpoint_last.pt").exists(), "the first checkpoint")
        assert not (out / "acula_final.pt").exists()
        first = torch.load(out / "checkpoint_last.pt", map_location="cpu", weights_only=True)
        assert first["step"] < 3  # the kill came before the end: something is left to resume
        again = subprocess.run(command(out), env=ENV, capture_output=True, text=True)
        assert again.returncode == 0, again.stderr[-3000:]
        assert reference.wait() == 0, (tmp_path / "ref.log").read_text()[-3000:]
    a = torch.load(ref / "acula_final.pt", map_location="cpu", weights_only=True)
    b = torch.load(out / "acula_final.pt", map_location="cpu", weights_only=True)
    assert a["step"] == b["step"] == 3
    assert_same(a, b)  # weights, optimiser, scheduler, RNG, config: all bitwise

    def log(d: Path) -> list[dict]:
        with open(d / "train_log.csv") as f:
            return [{k: v for k, v in r.items() if k != "seconds"} for r in csv.DictReader(f)]
    assert log(out) == log(ref)  # rows the killed run wrote past its checkpoint were dropped, not doubled


# ------------------------------------------------------------------------------------- extraction

EMBED_SCRIPT = """
import sys, torch
from acula.encoders.checkpoint import load_encoder
from acula.extract import embed_files
torch.set_num_threads(1)
checkpoint, out, resume, *paths = sys.argv[1:]
result = embed_files(load_encoder(checkpoint), paths, batch_size=2, chunk_size=2, progress=False,
                     resume_dir=resume or None)
result.save(out)
"""


@pytest.fixture(scope="module")
def encoder_file(tmp_path_factory) -> Path:
    """Fixed weights on disk, so separate processes embed with the same encoder."""
    torch.manual_seed(0)
    return save_encoder(create("opera-gt", preset="tiny"), tmp_path_factory.mktemp("enc") / "tiny.safetensors")


def _npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def test_embed_killed_mid_run_resumes_to_the_uninterrupted_result(tmp_path, encoder_file):
    paths = tones(tmp_path / "audio", 11)
    (tmp_path / "audio" / "broken.wav").write_text("not audio")
    paths.insert(5, str(tmp_path / "audio" / "broken.wav"))  # skips are resumed too
    ref, out, partial = tmp_path / "ref.npz", tmp_path / "out.npz", tmp_path / "out.npz.partial"

    def command(target: Path, resume: str) -> list[str]:
        return [sys.executable, "-c", EMBED_SCRIPT, str(encoder_file), str(target), resume, *paths]

    reference = subprocess.Popen(command(ref, ""), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                 text=True)
    proc = subprocess.Popen(command(out, str(partial)), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    kill_when(proc, lambda: (partial / "chunk-000001.npz").exists(), "two saved chunks")
    assert not out.exists()
    n_saved = len(list(partial.glob("chunk-*.npz")))
    assert 2 <= n_saved < 6

    again = subprocess.run(command(out, str(partial)), env=ENV, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-3000:]
    assert reference.wait() == 0, reference.stderr.read()[-3000:]
    assert not partial.exists()  # removed once complete
    a, b = _npz(ref), _npz(out)
    assert set(a) == set(b)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    assert a["embeddings"].shape == (11, 128) and list(a["skipped_paths"]) == [paths[5]]


@pytest.fixture(scope="module")
def encoder():
    torch.manual_seed(0)
    return create("opera-gt", preset="tiny")


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> list[str]:
    root = tmp_path_factory.mktemp("clips")
    paths = tones(root, 6)
    (root / "empty.wav").write_bytes(b"")
    return paths[:2] + [str(root / "empty.wav")] + paths[2:]


def _embed(encoder, paths, **kw) -> Embeddings:
    return embed_files(encoder, paths, batch_size=2, chunk_size=2, progress=False, **kw)


def assert_same_embeddings(a: Embeddings, b: Embeddings) -> None:
    np.testing.assert_array_equal(a.embeddings, b.embeddings)
    assert (a.paths, a.skipped_paths, a.skipped_reasons) == (b.paths, b.skipped_paths, b.skipped_reasons)


def interrupt_at_clip(monkeypatch, n: int) -> list[str]:
    """Make `read_clip` raise KeyboardInterrupt (a Ctrl-C) on its n-th call; returns the paths it was asked for."""
    real, seen = extract.read_clip, []

    def read(path, *args):
        seen.append(path)
        if len(seen) == n:
            raise KeyboardInterrupt
        return real(path, *args)

    monkeypatch.setattr(extract, "read_clip", read)
    return seen


def test_resume_reuses_finished_chunks_and_equals_a_plain_run(encoder, clips, tmp_path, monkeypatch):
    plain = _embed(encoder, clips)
    assert len(plain.paths) == 6 and plain.skipped_paths == [clips[2]]
    partial = tmp_path / "partial"
    interrupt_at_clip(monkeypatch, 6)  # in the middle of chunk 2
    with pytest.raises(KeyboardInterrupt):
        _embed(encoder, clips, resume_dir=partial)
    assert sorted(p.name for p in partial.iterdir()) == ["chunk-000000.npz", "chunk-000001.npz", "meta.json"]

    monkeypatch.undo()
    seen = interrupt_at_clip(monkeypatch, 0)  # never interrupts; records the reads
    resumed = _embed(encoder, clips, resume_dir=partial)
    assert seen == clips[4:]  # the four clips of the saved chunks were not read again
    assert not partial.exists()
    assert_same_embeddings(resumed, plain)


def test_resume_refuses_partial_results_of_another_run(encoder, clips, tmp_path, monkeypatch):
    partial = tmp_path / "partial"
    interrupt_at_clip(monkeypatch, 1)
    with pytest.raises(KeyboardInterrupt):
        _embed(encoder, clips, resume_dir=partial)
    monkeypatch.undo()
    torch.manual_seed(1)
    other = create("opera-gt", preset="tiny")  # same config, other weights
    with pytest.raises(ValueError, match=r"partial.*another embedding run \(differs in: weights_sha256\)"):
        _embed(other, clips, resume_dir=partial)
    with pytest.raises(ValueError, match=r"differs in: n_paths, paths_sha256"):
        _embed(encoder, clips[:-1], resume_dir=partial)
    with pytest.raises(ValueError, match=r"differs in: batch_size"):
        embed_files(encoder, clips, batch_size=3, chunk_size=2, progress=False, resume_dir=partial)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not an embedding resume folder"):
        _embed(encoder, clips, resume_dir=foreign)
    assert (foreign / "notes.txt").read_text() == "mine"


def test_strict_rerun_does_not_accept_a_saved_skip(encoder, clips, tmp_path, monkeypatch):
    partial = tmp_path / "partial"
    interrupt_at_clip(monkeypatch, 5)  # chunk 1, holding the skipped clips[2], is saved by then
    with pytest.raises(KeyboardInterrupt):
        _embed(encoder, clips, resume_dir=partial)
    monkeypatch.undo()
    with pytest.raises(AudioError, match="empty file"):
        _embed(encoder, clips, resume_dir=partial, strict=True)


def test_cli_embed_resume_flag(clips, tmp_path):
    out = tmp_path / "e.npz"
    assert main(["embed", *clips, "--encoder", "opera-gt", "--preset", "tiny", "--resume", "--out", str(out)]) == 0
    assert out.is_file() and not Path(str(out) + ".partial").exists()


# ------------------------------------------------------------------------------------- atomic writes

# calls that create or overwrite a file: by full name, or by method name on anything but acula._io
_WRITER_CALLS = {"torch.save", "np.save", "np.savez", "np.savez_compressed", "numpy.save", "sf.write",
                 "soundfile.write", "save_file", "SummaryWriter", "shutil.copy", "shutil.copyfile"}
_WRITER_METHODS = {"savefig", "to_csv", "to_parquet", "write_text", "write_bytes", "open_memmap", "tofile"}
# (module, function) allowed to write in place, and why
_ALLOWED = {
    ("align/trainer.py", "_log"): "append-only CSV log; rows past the last checkpoint are dropped on resume",
    ("data/features.py", "_locked"): "an flock lock file, never read",
    ("data/features.py", "compute_shard"): "a mkstemp spill file, renamed into place via atomic_path",
    ("align/trainer.py", "_tensorboard"): "TensorBoard event files are append-only logs",
}


def _writes(tree: ast.AST):
    """(function name, line, call text) of every call that writes a file outside an `atomic_path` block."""
    def visit(node, func, atomic):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            func = node.name
        if isinstance(node, (ast.With, ast.AsyncWith)):
            atomic = atomic or any("atomic_path" in ast.unparse(item.context_expr) for item in node.items)
        if isinstance(node, ast.Call) and not atomic:
            full = ast.unparse(node.func)
            method = node.func.attr if isinstance(node.func, ast.Attribute) else None
            receiver = ast.unparse(node.func.value) if method else ""
            mode = ""
            if full in ("open", "os.fdopen", "sf.SoundFile", "soundfile.SoundFile"):
                args = node.args[1:2] + [k.value for k in node.keywords if k.arg == "mode"]
                mode = ast.unparse(args[0]) if args else "'r'"
            if (full in _WRITER_CALLS or (method in _WRITER_METHODS and receiver not in ("_io", "acula._io"))
                    or any(c in mode for c in "wax+")):
                yield func, node.lineno, ast.unparse(node)[:90]
        for child in ast.iter_child_nodes(node):
            yield from visit(child, func, atomic)

    yield from visit(tree, None, False)


def test_every_file_the_package_writes_is_written_atomically():
    root = Path(acula.__file__).parent
    offenders = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if rel == "_io.py":
            continue
        for func, line, text in _writes(ast.parse(path.read_text(), filename=str(path))):
            if (rel, func) not in _ALLOWED:
                offenders.append(f"{rel}:{line} in {func}(): {text}")
    assert not offenders, "non-atomic writes (use acula._io.atomic_path):\n" + "\n".join(offenders)


def test_the_atomic_write_scan_finds_a_plain_write():
    tree = ast.parse("def f(p, x):\n    np.save(p, x)\n    with atomic_path(p) as t:\n        np.save(t, x)\n"
                     "    with open(p, 'w') as g:\n        pass\n    open(p).read()\n    p.write_text('a')\n"
                     "    _io.write_text(p, 'a')\n    fig.savefig(p)\n")
    assert [(f, line) for f, line, _ in _writes(tree)] == [("f", 2), ("f", 5), ("f", 8), ("f", 10)]
