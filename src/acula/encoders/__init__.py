"""Audio encoders behind one interface (`AudioEncoder`) and one factory (`create`)."""

from .registry import builtin_names, create, list_encoders, register

__all__ = ["AudioEncoder", "InputContract", "builtin_names", "create", "list_encoders", "register"]


def __getattr__(name: str):
    """`AudioEncoder` and `InputContract` import torch; load them on first use so the registry stays light."""
    if name in ("AudioEncoder", "InputContract"):
        from . import base

        return getattr(base, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
