"""The `acula` command. One module per command (acula/cli/<command>.py) registers its flags and holds a thin
body that imports the library when it runs; building the parser imports only the standard library, so
`acula --help`, `acula X --help` and `acula encoders` answer at once (benchmarks/cli_startup.py)."""

from __future__ import annotations

import argparse
import importlib
import sys

from ._common import missing_package, run, selected_command

# the command modules, in the order `acula --help` lists their commands
COMMANDS = ("demo", "embed", "encoders", "align", "reports", "convert", "bench", "zeroshot", "finetune", "figures",
            "corpus", "analyze", "experiment", "publish")
# commands whose flags are still defined in the library: imported only when the command line selects them
LIBRARY_FLAGS = ("reports",)


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The `acula` parser. `argv`, the command line it will parse, lets a command whose flags need the library
    (`experiment`) load it only when selected; without `argv` every command is complete."""
    parser = argparse.ArgumentParser(prog="acula", description="Teach medical-audio encoders clinical language.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        module = importlib.import_module(f"{__name__}.{name}")
        if name in LIBRARY_FLAGS:
            module.register(sub, argv)
        else:
            module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        parser = build_parser(argv)
    except ModuleNotFoundError as e:  # a command whose flags come from the library, and a package it needs is missing
        return missing_package(selected_command(argv), e)
    return run(parser.parse_args(argv))
