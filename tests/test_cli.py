"""The `acula` command itself: a light parser, missing packages named, the encoder list, flag defaults."""

from __future__ import annotations

import subprocess
import sys
import types

import pytest

from acula.cli import build_parser, main

HEAVY = ("torch", "transformers", "sklearn", "numpy", "scipy", "pandas")


def test_help_of_every_command_imports_no_heavy_package():
    """`acula --help` and `acula X --help` build the parser from the standard library alone (speed:
    benchmarks/cli_startup.py). Run in a fresh interpreter, since this one has imported everything."""
    cmds = list(build_parser(["--help"])._subparsers._group_actions[0].choices)
    assert {"demo", "embed", "encoders", "align", "reports", "bench", "calibrate", "zeroshot", "retrieve"} <= set(cmds)
    code = f"""
import contextlib, io, sys
from acula.cli import main
for argv in [["--help"], *[[c, "--help"] for c in {cmds!r}], ["encoders"]]:
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            main(argv)
        except SystemExit:
            pass
print(sorted({{m.split(".")[0] for m in sys.modules}} & set({HEAVY!r})))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_encoders_lists_the_registry_without_importing_it(capsys):
    from acula.encoders import registry

    assert main(["encoders"]) == 0
    listed = capsys.readouterr().out.split()
    assert listed == registry.builtin_names() and set(listed) <= set(registry.list_encoders())
    for module, names in registry.BUILTIN.items():  # each module registers exactly the names listed for it
        mine = sorted(n for n, f in registry._REGISTRY.items() if f.__module__ == f"acula.encoders.{module}")
        assert mine == sorted(names), module


def test_missing_package_is_named_with_its_install_command(monkeypatch, capsys):
    """A third-party package missing when a command runs: its name and `pip install`, exit code 2."""
    for name in [m for m in sys.modules if m.startswith("acula.evaluate.joint")]:
        monkeypatch.delitem(sys.modules, name)  # imported afresh by the command
    monkeypatch.setitem(sys.modules, "sklearn.metrics", None)  # as if scikit-learn were not installed
    code = main(["zeroshot", "--checkpoint", "x.pt", "--manifest", "m.csv", "--label-column", "murmur",
                 "--out", "never-written", "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2 and err.strip() == "acula zeroshot: missing package 'sklearn' (pip install scikit-learn)"


def test_missing_module_of_acula_itself_is_a_bug_not_a_setup_problem(monkeypatch):
    monkeypatch.setitem(sys.modules, "acula.evaluate.joint.calibration", None)
    with pytest.raises(ModuleNotFoundError, match="acula.evaluate.joint.calibration"):
        main(["calibrate", "--checkpoint", "x.pt", "--manifest", "m.csv", "--device", "cpu"])


def test_missing_package_while_building_a_library_defined_parser(monkeypatch, capsys):
    """`reports` takes its flags from acula.text.reports, imported at parse time only when selected."""
    from acula.cli import LIBRARY_FLAGS

    def register_cli(sub):
        raise ModuleNotFoundError("No module named 'yaml'", name="yaml")

    assert "reports" in LIBRARY_FLAGS
    monkeypatch.setitem(sys.modules, "acula.text.reports", types.SimpleNamespace(register_cli=register_cli))
    assert "reports" in build_parser(["embed", "--help"])._subparsers._group_actions[0].choices  # listed, not built
    assert main(["reports", "build", "--help"]) == 2
    assert capsys.readouterr().err.strip() == "acula reports: missing package 'yaml' (pip install pyyaml)"


def test_library_defaults_reach_the_flags_left_unset():
    from acula.cli import corpus
    from acula.cli.finetune import config_from_args
    from acula.data.corpus import DEFAULT_PATTERN
    from acula.evaluate.finetune import FinetuneConfig

    assert corpus.DEFAULT_PATTERN == DEFAULT_PATTERN  # shown in the help, which must not import the library

    args = build_parser().parse_args(["finetune", "--tasks", "T1", "--out", "o"])
    assert config_from_args(args) == FinetuneConfig()
    args = build_parser().parse_args(["finetune", "--tasks", "T1", "--out", "o", "--lr", "0.01", "--head", "mlp"])
    assert config_from_args(args) == FinetuneConfig(lr=0.01, head="mlp")


def test_device_auto_resolves_once_for_every_command():
    import torch

    from acula.cli._common import resolve_device

    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cuda:1") == "cuda:1" and resolve_device("cpu") == "cpu"
    for argv in (["bench", "--tasks", "T1"], ["finetune", "--tasks", "T1", "--out", "o"],
                 ["zeroshot", "--checkpoint", "c", "--manifest", "m", "--out", "o", "--label-column", "y"]):
        assert build_parser().parse_args(argv).device == "auto"
