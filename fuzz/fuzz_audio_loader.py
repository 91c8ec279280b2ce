"""Fuzz `acula.audio.io.load_audio`: it must return finite float32 mono audio or raise `AudioError`.

Anything else (another exception, a non-finite sample, a wrong dtype or shape, a hang) is a bug: a
corpus of damaged medical recordings must never crash a run or feed NaN into training. Inputs are
drawn from three families, each from its own seeded generator so any case can be replayed alone:

- bytes:   random bytes, optionally behind a real magic number (RIFF/WAVE, fLaC, OggS, FORM/AIFF)
- valid:   files written by libsndfile in a random format, subtype, sample rate (1 Hz .. 384 kHz),
           channel count (1..8), length (0..3 s) and content (noise, tones, silence, DC, clipping,
           huge finite values, NaN/Inf)
- mutated: a valid file with its header fields rewritten (RIFF/data sizes, channels, rate, bits),
           random bytes flipped, a slice deleted or duplicated, or the tail cut off

    python fuzz/fuzz_audio_loader.py --minutes 2            # run; failing inputs are saved
    python fuzz/fuzz_audio_loader.py --seed 0 --case 1234   # replay one case with its traceback

Cases run in a worker process with capped memory (`--max-gb`) and a per-case timeout, so a header
that promises billions of frames shows up as a MemoryError, and a segfault or hang as a failure of
that case; the worker is replaced and the run goes on. Exit status 1 when any case failed.
"""

from __future__ import annotations

import argparse
import collections
import io
import json
import multiprocessing as mp
import os
import re
import resource
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from acula._io import write_bytes, write_json
from acula.audio.io import AudioError, load_audio

FORMATS = {  # format -> (extension, subtypes libsndfile writes for it)
    "WAV": (".wav", ["PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE", "ULAW", "ALAW", "IMA_ADPCM",
                     "MS_ADPCM"]),
    "FLAC": (".flac", ["PCM_S8", "PCM_16", "PCM_24"]),
    "OGG": (".ogg", ["VORBIS"]),
    "AIFF": (".aiff", ["PCM_S8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE"]),
}
MAGIC = [b"RIFF\x00\x00\x00\x00WAVEfmt ", b"fLaC", b"OggS", b"FORM\x00\x00\x00\x00AIFF", b""]
RATES = [1, 2, 100, 2000, 4000, 8000, 11025, 16000, 22050, 44100, 48000, 96000, 192000, 384000]
CONTENTS = ["noise", "tone", "silence", "dc", "clipped", "huge", "tiny", "nan", "inf", "impulse"]


class Hang(Exception):
    pass


def _content(rng: np.random.Generator, kind: str, n: int, channels: int, sr: int) -> np.ndarray:
    t = np.arange(n) / sr
    if kind == "noise":
        x = rng.normal(0, 0.3, (n, channels))
    elif kind == "tone":
        x = 0.5 * np.sin(2 * np.pi * rng.uniform(20, max(21, sr / 2)) * t)[:, None].repeat(channels, 1)
    elif kind == "silence":
        x = np.zeros((n, channels))
    elif kind == "dc":
        x = np.full((n, channels), rng.uniform(-1, 1))
    elif kind == "clipped":
        x = np.clip(rng.normal(0, 3, (n, channels)), -1, 1)
    elif kind == "huge":  # finite float samples far beyond +-1 (a mis-scaled or byte-swapped float file)
        x = rng.normal(0, 1, (n, channels)) * 10.0 ** rng.uniform(3, 38)
    elif kind == "tiny":
        x = rng.normal(0, 1, (n, channels)) * 10.0 ** rng.uniform(-40, -6)
    elif kind == "impulse":
        x = np.zeros((n, channels))
        if n:
            x[rng.integers(n)] = 1.0
    else:  # nan / inf at a few positions of otherwise normal audio
        x = rng.normal(0, 0.3, (n, channels))
        if n:
            x[rng.integers(0, n, size=rng.integers(1, 4))] = np.nan if kind == "nan" else np.inf * rng.choice([-1, 1])
    return x


def valid_file(rng: np.random.Generator) -> tuple[bytes, str, dict]:
    """A file libsndfile wrote itself; returns (bytes, extension, how it was made)."""
    fmt = rng.choice(list(FORMATS))
    ext, subtypes = FORMATS[fmt]
    subtype = str(rng.choice(subtypes))
    sr = int(rng.choice(RATES)) if rng.random() < 0.8 else int(rng.integers(1, 400_000))
    if fmt == "OGG":  # libsndfile's Vorbis *encoder* segfaults on odd rates (e.g. 350666 Hz): not our target
        sr = int(rng.choice([8000, 16000, 22050, 44100, 48000]))
    channels = int(rng.integers(1, 9)) if rng.random() < 0.3 else int(rng.integers(1, 3))
    n = int(rng.integers(0, max(2, min(3 * sr, 200_000))))
    kind = str(rng.choice(CONTENTS))
    x = _content(rng, kind, n, channels, sr)
    dtype = "float64" if subtype in ("FLOAT", "DOUBLE") else "float32"
    if dtype == "float32":  # integer subtypes: libsndfile clips, and NaN has no integer meaning
        x = np.nan_to_num(x, nan=0.0, posinf=1.0, neginf=-1.0)
    buf = io.BytesIO()
    sf.write(buf, x.astype(dtype), sr, format=fmt, subtype=subtype)
    return buf.getvalue(), ext, {"format": fmt, "subtype": subtype, "sr": sr, "channels": channels, "frames": n,
                                 "content": kind}


def random_bytes(rng: np.random.Generator) -> tuple[bytes, str, dict]:
    magic = MAGIC[rng.integers(len(MAGIC))]
    body = rng.integers(0, 256, int(rng.integers(0, 4096)), dtype=np.uint8).tobytes()
    ext = str(rng.choice([".wav", ".flac", ".ogg", ".aiff", ".mp3"]))
    return magic + body, ext, {"magic": magic[:4].decode("latin-1"), "bytes": len(magic) + len(body)}


def _wav_fields(data: bytes) -> dict[str, int]:
    """Byte offsets of the RIFF/fmt/data fields of a canonical WAV (those libsndfile writes)."""
    out = {}
    if data[:4] == b"RIFF":
        out["riff_size"] = 4
    i = data.find(b"fmt ")
    if i >= 0:
        out.update(channels=i + 10, rate=i + 12, byte_rate=i + 16, block_align=i + 20, bits=i + 22)
    j = data.find(b"data")
    if j >= 0:
        out["data_size"] = j + 4
    return out


def mutated_file(rng: np.random.Generator) -> tuple[bytes, str, dict]:
    data, ext, how = valid_file(rng)
    data = bytearray(data)
    ops = []
    for _ in range(int(rng.integers(1, 4))):
        op = str(rng.choice(["header_field", "flip", "truncate", "delete", "duplicate", "zero_run"]))
        fields = _wav_fields(bytes(data)) if ext == ".wav" else {}
        if op == "header_field" and fields:
            name = str(rng.choice(list(fields)))
            pos = fields[name]
            size = 2 if name in ("channels", "block_align", "bits") else 4
            value = int(rng.choice([0, 1, 2, 3, 7, 8, 255, 65535, 2**31 - 1, 2**32 - 1, int(rng.integers(0, 2**16))]))
            value &= (1 << (8 * size)) - 1
            if pos + size <= len(data):
                data[pos:pos + size] = value.to_bytes(size, "little")
                ops.append(f"{name}={value}")
                continue
            op = "flip"
        if not data:
            break
        if op in ("flip", "header_field"):  # header bytes are the interesting ones
            hi = min(len(data), 128) if rng.random() < 0.7 else len(data)
            for p in rng.integers(0, hi, size=int(rng.integers(1, 9))):
                data[int(p)] = int(rng.integers(0, 256))
            ops.append("flip")
        elif op == "truncate":
            cut = int(rng.integers(0, len(data)))
            del data[cut:]
            ops.append(f"truncate@{cut}")
        elif op == "delete":
            a = int(rng.integers(0, len(data)))
            b = min(len(data), a + int(rng.integers(1, 64)))
            del data[a:b]
            ops.append(f"delete[{a}:{b}]")
        elif op == "duplicate":
            a = int(rng.integers(0, len(data)))
            b = min(len(data), a + int(rng.integers(1, 256)))
            data[b:b] = data[a:b]
            ops.append(f"duplicate[{a}:{b}]")
        else:
            a = int(rng.integers(0, len(data)))
            b = min(len(data), a + int(rng.integers(1, 512)))
            data[a:b] = bytes(b - a)
            ops.append(f"zero[{a}:{b}]")
    return bytes(data), ext, {**how, "mutations": ops}


FAMILIES = {"bytes": random_bytes, "valid": valid_file, "mutated": mutated_file}


def make_case(seed: int, case: int) -> tuple[bytes, str, dict, dict]:
    """Input bytes, extension, how they were made, and the `load_audio` arguments for case `case`."""
    rng = np.random.default_rng([seed, case])
    family = str(rng.choice(list(FAMILIES), p=[0.2, 0.35, 0.45]))
    try:
        data, ext, how = FAMILIES[family](rng)
    except (sf.LibsndfileError, RuntimeError, ValueError, TypeError) as e:  # a combination libsndfile won't write
        data, ext, how = random_bytes(rng)
        how["note"] = f"{family} generation refused: {e}"
        family = "bytes"
    args = {"sample_rate": int(rng.choice([16000, 8000, 22050, 44100])),
            "max_seconds": None if rng.random() < 0.5 else float(rng.choice([0.01, 0.5, 2.0, 8.1875]))}
    return data, ext, {"family": family, **how}, args


def check(path: Path, args: dict, timeout_s: float) -> tuple[str, str]:
    """('ok' | 'audio_error' | 'failure', detail)."""
    def on_alarm(signum, frame):
        raise Hang(f"load_audio did not return within {timeout_s} s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, timeout_s)
    try:
        y = load_audio(path, **args)
    except AudioError as e:
        if e.path != str(path) or not str(e).startswith(f"{path}: "):
            return "failure", f"AudioError does not name the file: {e}"
        return "audio_error", _reason_kind(e.reason)
    except Exception as e:  # noqa: BLE001 - every other exception is what we are hunting
        return "failure", f"{type(e).__name__}: {e}".splitlines()[0][:300]
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    if not isinstance(y, np.ndarray) or y.dtype != np.float32 or y.ndim != 1 or y.size == 0:
        return "failure", f"bad result: {type(y).__name__} {getattr(y, 'dtype', '')} {getattr(y, 'shape', '')}"
    n_bad = sum(int((~np.isfinite(y[i:i + 2**20])).sum()) for i in range(0, y.size, 2**20))
    if n_bad:
        return "failure", f"non-finite output: {n_bad} of {y.size} samples"
    size = path.stat().st_size
    if y.size > max(1000 * size, 2**27):  # >= 512 MiB out of a file a thousand times smaller
        return "failure", f"blow-up: {y.size} samples ({y.nbytes / 2**30:.1f} GiB) from a {size}-byte file"
    if args["max_seconds"] is not None and y.size > np.ceil(args["max_seconds"] * args["sample_rate"]):
        return "failure", f"returned {y.size} samples, more than max_seconds={args['max_seconds']} allows"
    return "ok", ""


def _reason_kind(reason: str) -> str:
    """Group reasons: drop paths and numbers."""
    return re.sub(r"\d+(\.\d+)?(e[-+]?\d+)?", "N", reason.split(" (libsndfile")[0])[:80]


def _worker(conn, seed: int, work: str, timeout_s: float, max_bytes: int) -> None:
    """Run cases sent by the parent; a segfault or OOM kill here ends only this process."""
    resource.setrlimit(resource.RLIMIT_AS, (max_bytes, resource.getrlimit(resource.RLIMIT_AS)[1]))
    quiet = os.open(os.devnull, os.O_WRONLY)
    os.dup2(quiet, 2)  # libmpg123 and libsndfile print a note for every broken frame
    while (case := conn.recv()) is not None:
        try:
            data, ext, how, kw = make_case(seed, case)
        except MemoryError:
            conn.send(("skip", "generator out of memory", {}))
            continue
        path = Path(work) / f"input {case} ü{ext}"  # spaces and non-ASCII on every path
        path.write_bytes(data)
        conn.send(("generated", (ext, how), kw))  # from here on a dead worker is the loader's fault
        outcome, detail = check(path, kw, timeout_s)
        path.unlink()
        conn.send((outcome, detail, {}))


class Runner:
    """A worker process that survives nothing but is replaced after any crash."""

    def __init__(self, seed: int, work: Path, timeout_s: float, max_bytes: int):
        self.args = (seed, str(work), timeout_s, max_bytes)
        self.proc = None

    def _start(self) -> None:
        ctx = mp.get_context("fork")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker, args=(child, *self.args), daemon=True)
        self.proc.start()
        child.close()

    def _recv(self, wait_s: float):
        if self.conn.poll(wait_s):
            try:
                return self.conn.recv()
            except EOFError:
                pass
        return None

    def run(self, case: int, wait_s: float) -> tuple[str, str, dict | None]:
        """(outcome, detail, (ext, how, load_audio kwargs) or None)."""
        if self.proc is None or not self.proc.is_alive():
            self.stop()
            self._start()
        self.conn.send(case)
        first = self._recv(wait_s)
        if first is None:  # the generator (libsndfile's writer) crashed or hung: not the loader's fault
            self.stop()
            return "skip", "generator crashed", None
        if first[0] == "skip":
            return "skip", first[1], None
        (ext, how), kw = first[1], first[2]
        result = self._recv(wait_s + 5)
        if result is None:
            self.proc.join(1)
            code = self.proc.exitcode
            self.stop()
            why = f"worker killed by signal {-code}" if code and code < 0 else f"worker died (exit {code})"
            return "failure", f"crash: {why}", (ext, how, kw)
        return result[0], result[1], (ext, how, kw)

    def stop(self) -> None:
        if self.proc is not None:
            if self.proc.is_alive():
                self.proc.kill()
            self.proc.join()
        self.proc = None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=2.0, help="time budget")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--case", type=int, default=None, help="replay only this case (prints the traceback)")
    p.add_argument("--start", type=int, default=0, help="first case number")
    p.add_argument("--timeout", type=float, default=20.0, help="seconds one load may take before it counts as a hang")
    p.add_argument("--max-gb", type=float, default=4.0, help="address-space cap of the worker (RLIMIT_AS)")
    p.add_argument("--failures", default=None, help="folder for failing inputs (default: a new temporary folder)")
    args = p.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="acula-fuzz-"))

    if args.case is not None:
        data, ext, how, kw = make_case(args.seed, args.case)
        path = work / f"case{ext}"
        path.write_bytes(data)
        print(json.dumps({"case": args.case, "how": how, "load_audio": kw, "file": str(path)}, indent=2))
        y = load_audio(path, **kw)  # let the exception show with its traceback
        print(f"loaded {y.dtype} {y.shape}, finite: {bool(np.isfinite(y).all())}")
        return 0

    failures_dir = Path(args.failures) if args.failures else work / "failures"
    runner = Runner(args.seed, work, args.timeout, int(args.max_gb * 2**30))
    deadline = time.monotonic() + 60 * args.minutes
    outcomes: collections.Counter = collections.Counter()
    reasons: collections.Counter = collections.Counter()
    failures: dict[str, list[int]] = collections.defaultdict(list)
    case = args.start
    try:
        while time.monotonic() < deadline:
            outcome, detail, made = runner.run(case, args.timeout + 10)
            family = made[1]["family"] if made else "generator"
            outcomes[(family, outcome)] += 1
            if outcome == "audio_error":
                reasons[detail] += 1
            elif outcome == "failure":
                key = re.sub(r"\d+", "N", detail)[:160]
                failures[key].append(case)
                if len(failures[key]) <= 3:  # keep a few inputs of each kind
                    ext, how, kw = made
                    write_bytes(failures_dir / f"case{case}{ext}", make_case(args.seed, case)[0])
                    write_json(failures_dir / f"case{case}.json", {"seed": args.seed, "case": case, "how": how,
                                                                   "load_audio": kw, "failure": detail})
            case += 1
    finally:
        runner.stop()

    print(f"{case - args.start} cases in {args.minutes:g} min (seed {args.seed}, cases {args.start}..{case - 1})")
    for (family, outcome), k in sorted(outcomes.items()):
        print(f"  {family:9s} {outcome:12s} {k}")
    print("AudioError reasons:")
    for r, k in reasons.most_common():
        print(f"  {k:6d}  {r}")
    if failures:
        print(f"FAILURES ({sum(map(len, failures.values()))} cases, {len(failures)} kinds); inputs in {failures_dir}:")
        for key, cases in failures.items():
            print(f"  {len(cases):5d}x {key}\n"
                  f"         replay: python {sys.argv[0]} --seed {args.seed} --case {cases[0]}")
        return 1
    print("no failures")
    shutil.rmtree(work, ignore_errors=True)  # only the (now empty) scratch folder
    return 0


if __name__ == "__main__":
    sys.exit(main())
