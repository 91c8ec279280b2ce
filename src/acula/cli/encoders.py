"""`acula encoders`: the registered encoder names (known without importing torch)."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("encoders", help="list registered encoders")
    p.set_defaults(func=cmd_encoders)


def cmd_encoders(args) -> int:
    from ..encoders.registry import builtin_names

    print("\n".join(builtin_names()))
    return 0
