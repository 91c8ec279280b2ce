"""Name -> factory registry, in the style of timm's `create_model`.

Factories register with `@register("opera-gt")`; `create("opera-gt", preset="tiny",
checkpoint=...)` builds the network and (optionally) loads weights through the strict loader.
"""

from __future__ import annotations

import fnmatch
from typing import TYPE_CHECKING, Any, Callable

from ..audio.spec import InputSpec

if TYPE_CHECKING:  # this module imports only the standard library, so `acula encoders` does not load torch
    from .base import AudioEncoder

# The built-in encoders, by the module whose import registers them. `acula encoders` lists these without
# importing the modules; tests/test_cli.py checks that each module registers exactly its names here.
BUILTIN: dict[str, tuple[str, ...]] = {
    "opera_gt": ("opera-gt",), "opera_ct": ("opera-ct",), "opera_ce": ("opera-ce",), "yamnet": ("yamnet",),
    "hf": ("hf-ast", "hf-clap"),
}

_REGISTRY: dict[str, Callable[..., AudioEncoder]] = {}
ALIASES = {"operaGT": "opera-gt", "operaCT": "opera-ct", "operaCE": "opera-ce"}  # the OPERA model card's names


# --------------------------------------------------------------------------------------------------------
# inputs: how each encoder sees a recording


def _windows(seconds: float) -> InputSpec:  # OPERA-GT: trimmed, overlapping windows, features averaged
    return InputSpec("opera", seconds)


def _whole(seconds: float, pad: str = "repeat") -> InputSpec:  # OPERA-CE/CT: the whole trimmed recording, padded
    return InputSpec("whole", seconds, padding=pad, trimming="silence")


# OPERA's per-model benchmark input (docs/protocol.md#per-task-input-lengths, the lengths of OPERA's
# `scripts/eval_all.sh`), by task id:
# fnmatch patterns, first match wins; "csv" is any task read from a CSV (`acula bench --task-csv`). Encoders not
# listed here benchmark with their default spec.
BENCH_INPUTS: dict[str, dict[str, InputSpec]] = {
    "opera-gt": {"T1[3-8]": _windows(5), "T19": _windows(8), "yaseen-*": _windows(4.064), "*": _windows(8.18)},
    "opera-ce": {"csv": _whole(2), "T[1256]": _whole(2), "T[89]": _whole(2), "T1[3-9]": _whole(1),
                 "yaseen-*": _whole(4), "*": _whole(8)},
    "opera-ct": {"csv": _whole(2), "T[1256]": _whole(2), "T1[3-8]": _whole(20, "zero"), "T19": _whole(30),
                 "yaseen-*": _whole(4), "*": _whole(8)},
}


def register(name: str) -> Callable[[Callable[..., AudioEncoder]], Callable[..., AudioEncoder]]:
    def deco(fn: Callable[..., AudioEncoder]) -> Callable[..., AudioEncoder]:
        _REGISTRY[name] = fn
        return fn

    return deco


def list_encoders() -> list[str]:
    _import_builtin()
    return sorted(_REGISTRY)


def builtin_names() -> list[str]:
    """The built-in encoder names, known without importing torch or any encoder module."""
    return sorted(n for names in BUILTIN.values() for n in names)


def canonical_name(name: str) -> str:
    return ALIASES.get(name, name)


def default_spec(encoder: "AudioEncoder", policy: str | None = None) -> InputSpec:
    """The encoder's own input (its contract's window and policy), or another policy at its window length."""
    return InputSpec.of(encoder.contract, policy)


def bench_spec(name: str, task: str) -> InputSpec | None:
    """The input OPERA's protocol gives encoder `name` on benchmark task `task`; None: its default spec."""
    table = BENCH_INPUTS.get(canonical_name(name), {})
    return next((spec for pattern, spec in table.items() if fnmatch.fnmatchcase(task, pattern)), None)


def create(name: str, checkpoint: str | None = None, *, pretrained: bool | str | dict | None = None,
           trust_checkpoint: bool = False, allow_missing_decoder: bool = False, **options: Any) -> AudioEncoder:
    """Build encoder `name`; load `checkpoint` strictly if given (see `acula.encoders.checkpoint`).

    `pretrained=True` (or a published name such as "acula", an `acula publish` repo "OWNER/NAME", or its local
    folder) fetches published weights through the Hugging Face hub instead (`acula.encoders.hub`); where they came
    from (repo, file, revision, commit, sha256) is kept in `model.config["pretrained"]`. A dict there is such a
    record, read back from a saved config: kept, nothing fetched (the caller loads the saved weights).
    """
    _import_builtin()
    record = pretrained if isinstance(pretrained, dict) else None
    if pretrained not in (None, False) and record is None:
        if checkpoint is not None:
            raise ValueError(f"{name}: give pretrained= or checkpoint= (--pretrained or --checkpoint), not both")
        from .hub import pretrained_weights

        name, options, checkpoint, record = pretrained_weights(name, pretrained, options)
    key = canonical_name(name)
    if key not in _REGISTRY:
        raise KeyError(f"unknown encoder {name!r}; registered: {', '.join(sorted(_REGISTRY))}")
    factory = _REGISTRY[key]
    prepare = getattr(factory, "prepare_checkpoint", None)  # encoders whose weights file is an option
    if prepare is not None:
        options, checkpoint = prepare(options, checkpoint)
    model = factory(**options)
    model.name = key
    model.config = {"name": key, **options, **({"pretrained": record} if record else {})}
    if checkpoint is not None:
        from .checkpoint import load_into

        load_into(model, checkpoint, trust_checkpoint=trust_checkpoint, allow_missing_decoder=allow_missing_decoder)
    return model


def _import_builtin() -> None:
    """Import the modules whose import registers the built-in encoders."""
    import importlib

    for mod in BUILTIN:
        try:
            importlib.import_module(f"{__package__}.{mod}")
        except ModuleNotFoundError as e:  # a module not written yet, never a missing dependency
            if e.name != f"{__package__}.{mod}":
                raise
