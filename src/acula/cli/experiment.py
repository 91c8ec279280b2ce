"""`acula experiment ...`: its flags come from acula.experiments, imported only when the command line selects it."""

from __future__ import annotations

from ._common import placeholder


def register(sub, argv: list[str] | None = None) -> None:
    if placeholder(sub, argv, "experiment", "end-to-end experiments on real recordings"):
        return
    from ..experiments import register_cli

    register_cli(sub)
