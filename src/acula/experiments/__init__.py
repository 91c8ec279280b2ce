"""`acula experiment ...`: end-to-end experiments on real recordings, each writing results.json + a figure."""

from __future__ import annotations


def register_cli(subparsers) -> None:
    """Add the `experiment` command group to the `acula` parser."""
    from . import real_heart

    p = subparsers.add_parser("experiment", help="end-to-end experiments on real recordings")
    sub = p.add_subparsers(dest="experiment", required=True)
    real_heart.register_cli(sub)
