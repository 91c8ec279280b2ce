"""`acula reports build`: clinical reports from dataset metadata (docs/reports.md).

Its flags are still defined in acula.text.reports (`register_cli`); they move here when that package is next
reworked. Until then the package is imported only when the command line selects `reports`."""

from __future__ import annotations

from ._common import placeholder


def register(sub, argv: list[str] | None = None) -> None:
    if placeholder(sub, argv, "reports", "clinical reports from dataset metadata"):
        return
    from ..text.reports import register_cli

    register_cli(sub)
