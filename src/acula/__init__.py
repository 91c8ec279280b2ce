"""acula: teach medical-audio encoders clinical language (AcuLa)."""

from ._version import __version__

__all__ = ["get_scene_embeddings", "get_timestamp_embeddings", "initialize_pretrained_model", "load_model"]


def __getattr__(name: str):
    """The HEAR API loads torch on first use, so `import acula.cli` (and `acula --help`) stays light."""
    if name in __all__:
        from . import hear

        return getattr(hear, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
