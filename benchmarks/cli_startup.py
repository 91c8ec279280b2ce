#!/usr/bin/env python
"""How fast the `acula` command answers: wall time of `acula --help`, `acula X --help` and `acula encoders`.

Each command runs as a fresh process (as a user types it), REPEATS times, interleaved so a busy machine slows all
alike; the median is reported, with the spread and the start-up of a bare `python -c pass` as the floor. No
command may import torch, transformers, scikit-learn or numpy (`-X importtime` is checked once per command).

    .venv/bin/python benchmarks/cli_startup.py            # prints the table
    .venv/bin/python benchmarks/cli_startup.py --write    # and puts it into benchmarks/RESULTS.md
    git archive 29f5c58 src | tar -x -C /tmp/before       # the code before issue 13 ...
    .venv/bin/python benchmarks/cli_startup.py --baseline-src /tmp/before/src   # ... timed in the same run

`--write` replaces only the section between the cli-startup markers in RESULTS.md (appending it the first
time); `benchmarks/run.py` carries that section over when it regenerates the file.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BEGIN, END = "<!-- cli-startup -->", "<!-- /cli-startup -->"
HEAVY = ("torch", "transformers", "sklearn", "numpy", "scipy", "pandas")
COMMANDS = (["--help"], ["embed", "--help"], ["align", "--help"], ["bench", "--help"], ["encoders"])


def acula_command() -> list[str]:
    """The console script next to this interpreter (what `make install` puts on the PATH), else `-m acula.cli`."""
    script = Path(sys.executable).with_name("acula")
    return [str(script)] if script.exists() else [sys.executable, "-m", "acula.cli"]


def run_once(cmd: list[str], env: dict | None = None) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, env=env)
    return time.perf_counter() - t


def heavy_imports(args: list[str]) -> list[str]:
    """Top-level packages among HEAVY that the command imports (from `python -X importtime`)."""
    p = subprocess.run([sys.executable, "-X", "importtime", "-m", "acula.cli", *args], capture_output=True, text=True)
    names = {line.rsplit("|", 1)[-1].strip().split(".")[0] for line in p.stderr.splitlines() if "|" in line}
    return sorted(names & set(HEAVY))


def measure(repeats: int, baseline_src: str | None = None) -> dict:
    base = acula_command()
    cmds = {"python -c pass": ([sys.executable, "-c", "pass"], None)}
    cmds.update({"acula " + " ".join(a): (base + a, None) for a in COMMANDS})
    if baseline_src:  # the same commands from another source tree (PYTHONPATH comes before the installed package)
        env = {**os.environ, "PYTHONPATH": baseline_src}
        cmds.update({"before: acula " + " ".join(a): ([sys.executable, "-m", "acula.cli", *a], env)
                     for a in COMMANDS[:2]})
    for cmd, env in cmds.values():  # warm the file cache once; not timed
        run_once(cmd, env)
    times: dict[str, list[float]] = {k: [] for k in cmds}
    for _ in range(repeats):
        for k, (cmd, env) in cmds.items():
            times[k].append(run_once(cmd, env))
    return {"times": times, "heavy": {"acula " + " ".join(a): heavy_imports(a) for a in COMMANDS},
            "load": os.getloadavg(), "repeats": repeats, "baseline": baseline_src}


def markdown(res: dict) -> str:
    how = "--write" + (" --baseline-src BEFORE/src" if res["baseline"] else "")
    lines = [BEGIN, "## CLI start-up", "",
             f"`python benchmarks/cli_startup.py {how}`, {dt.date.today().isoformat()}, {platform.python_version()}, "
             f"{os.cpu_count()} logical cores, load average {res['load'][0]:.2f} at the end. Each command is a fresh "
             f"process, run {res['repeats']} times (interleaved); wall time in seconds. Before issue 13 every command "
             "imported torch and scikit-learn while building the parser (6 s on a slower 2-core machine)"
             + (" – the `before:` rows run that code (commit 29f5c58) in the same session." if res["baseline"]
                else "."), "",
             "| command | median | min | max | heavy packages imported |", "|---|---|---|---|---|"]
    for k, ts in res["times"].items():
        heavy = res["heavy"].get(k)
        lines.append(f"| `{k}` | **{statistics.median(ts):.3f}** | {min(ts):.3f} | {max(ts):.3f} | "
                     f"{'–' if heavy is None else (', '.join(heavy) or 'none')} |")
    lines.append(END)
    return "\n".join(lines) + "\n"


def write_section(path: Path, section: str) -> None:
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + section.rstrip("\n") + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=9)
    p.add_argument("--write", action="store_true", help="put the table into benchmarks/RESULTS.md")
    p.add_argument("--baseline-src", default=None, metavar="DIR",
                   help="also time `acula --help` / `acula embed --help` from this src folder (e.g. older code)")
    args = p.parse_args(argv)
    if shutil.which("acula") is None and not Path(sys.executable).with_name("acula").exists():
        print("note: no `acula` console script; timing `python -m acula.cli`", file=sys.stderr)
    section = markdown(measure(args.repeats, args.baseline_src))
    print(section)
    if args.write:
        write_section(HERE / "RESULTS.md", section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
