"""Reading, strictly loading, saving and converting encoder checkpoints (docs/protocol.md#checkpoints).

OPERA and AcuLa load non-strictly (key checks off), so a wrong or partial checkpoint silently yields a random
encoder (docs/protocol.md#published-bugs, item 9). Here every key is accounted for: a missing encoder weight, an unknown
key or a shape mismatch is an error that names it, and the only tolerated differences are those
the model declares (`ignorable_missing` / `ignorable_unexpected`, fnmatch patterns on full keys),
BatchNorm's `num_batches_tracked` counters (they never affect evaluation-mode outputs), and, on request, an
absent MAM decoder. Pickled files are read with `weights_only=True`; full
unpickling (which can run code from the file) happens only with `trust_checkpoint=True`.

Formats read: OPERA Lightning `.ckpt` (`ckpt["state_dict"]`), AcuLa dicts (`audio_model_state_dict`
+ projection heads), bare state dicts, and acula `.safetensors` (config JSON in the safetensors
metadata and in a sidecar `<stem>.json`). Sources may be `hf://owner/repo[@revision]/path/in/repo`.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .._io import atomic_path, write_text
from .base import AudioEncoder

FORMAT = "acula-encoder"
FORMAT_VERSION = 1
HEAD_PREFIX = "projection_heads."  # safetensors keys "projection_heads.<name>.<key>"
_ACULA_HEADS = {"audio": "audio_projection_mlp_state_dict", "language": "language_projection_mlp_state_dict"}
# key prefixes that identify a foreign architecture, for the "use --encoder X" hint
_SIGNATURES = {
    "opera-ct": ("encoder.encoder.htsat.",),
    "opera-ce": ("encoder.efficientnet.", "encoder.cnn1."),
    "opera-gt": ("blocks.0.attn.qkv.", "decoder_blocks.0.attn.tau"),
}
_TRUST_HINT = ("it needs full unpickling, which can execute arbitrary code stored in the file. If you trust "
               "its source, pass trust_checkpoint=True (CLI: --trust-checkpoint)")


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit the model; the message says why."""


@dataclass
class Checkpoint:
    encoder_state: dict[str, torch.Tensor]
    projection_heads: dict[str, dict[str, torch.Tensor]] | None = None  # AcuLa: {"audio": ..., "language": ...}
    config: dict[str, Any] | None = None
    format: str = "raw"  # "lightning" | "acula" | "raw" | "module" | "safetensors"
    path: str | None = None


@dataclass
class LoadReport:
    source: str
    model: str
    loaded: list[str] = field(default_factory=list)
    ignored_missing: list[str] = field(default_factory=list)  # kept the model's own (deterministic) values
    ignored_unexpected: list[str] = field(default_factory=list)
    missing_decoder: list[str] = field(default_factory=list)  # allowed: decoder left at initialisation
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def __str__(self) -> str:
        verb = "matched" if self.errors else "loaded"
        lines = [f"{self.model} <- {self.source}: {verb} {len(self.loaded)} tensors"]
        if self.ignored_missing:
            lines.append(f"  kept model values for {len(self.ignored_missing)} missing recomputable keys: "
                         f"{_preview(self.ignored_missing)}")
        if self.ignored_unexpected:
            lines.append(f"  ignored {len(self.ignored_unexpected)} unused checkpoint keys: "
                         f"{_preview(self.ignored_unexpected)}")
        if self.missing_decoder:
            lines.append(f"  MAM decoder absent from the checkpoint ({len(self.missing_decoder)} keys): left at "
                         "random initialisation; features are unaffected, MAM starts from scratch")
        lines += [f"  error: {e}" for e in self.errors]
        return "\n".join(lines)


def _preview(keys: list[str], n: int = 6) -> str:
    return ", ".join(keys[:n]) + (f", … (+{len(keys) - n} more)" if len(keys) > n else "")


def _matches(key: str, patterns: tuple[str, ...] | list[str]) -> bool:
    return any(key == p or fnmatch.fnmatchcase(key, p) for p in patterns)


# ------------------------------------------------------------------------------------- reading
def resolve_source(source: str | os.PathLike) -> Path:
    """A local path, or `hf://owner/repo[@revision]/path/in/repo` fetched into the HF cache."""
    text = str(source)
    if not text.startswith("hf://"):
        path = Path(text).expanduser()
        if not path.is_file():
            raise CheckpointError(f"checkpoint {'is a directory, not a file' if path.is_dir() else 'not found'}: {path}")
        return path
    parts = text[len("hf://"):].split("/")
    if len(parts) < 3 or not all(parts):
        raise CheckpointError(f"{text}: expected hf://owner/repo/path/in/repo")
    repo, _, revision = f"{parts[0]}/{parts[1]}".partition("@")
    filename = "/".join(parts[2:])
    from .hub import download_file  # the HF cache, offline handling and the sha256 check of `--pretrained`

    return download_file(repo, filename, revision or "main")[0]


def read_checkpoint(source: str | os.PathLike | Checkpoint, trust_checkpoint: bool = False) -> Checkpoint:
    """Read any supported checkpoint into a `Checkpoint` (CPU tensors)."""
    if isinstance(source, Checkpoint):
        return source
    path = resolve_source(source)
    if path.suffix == ".safetensors":
        return _read_safetensors(path)
    obj = _torch_load(path, trust_checkpoint)
    if isinstance(obj, nn.Module):  # a pickled module (only reachable when trusted)
        return Checkpoint(obj.state_dict(), format="module", path=str(path))
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a dict of weights, found {type(obj).__name__}")
    if isinstance(obj.get("state_dict"), dict):
        ck = Checkpoint(_tensors(obj["state_dict"], path, "state_dict"), format="lightning", path=str(path))
    elif isinstance(obj.get("audio_model_state_dict"), dict):
        heads = {name: _tensors(obj[k], path, k) for name, k in _ACULA_HEADS.items() if isinstance(obj.get(k), dict)}
        config = obj.get("config") if isinstance(obj.get("config"), dict) else None
        ck = Checkpoint(_tensors(obj["audio_model_state_dict"], path, "audio_model_state_dict"), heads or None,
                        config, format="acula", path=str(path))
    elif obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        ck = Checkpoint(dict(obj), format="raw", path=str(path))
    else:
        raise CheckpointError(
            f"{path}: unrecognised checkpoint layout (top-level keys: {_preview(sorted(map(str, obj)), 10)}); "
            "expected 'state_dict' (OPERA/Lightning), 'audio_model_state_dict' (AcuLa) or a bare state dict"
        )
    if not ck.encoder_state:
        raise CheckpointError(f"{path}: the checkpoint holds no weights")
    return ck


def _tensors(state: dict, path: Path, where: str) -> dict[str, torch.Tensor]:
    bad = [str(k) for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{path}: {where} has non-tensor entries: {_preview(bad)}")
    return dict(state)


def _torch_load(path: Path, trust: bool) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        msg = str(e)
        needs_pickle = "Weights only load failed" in msg
        if not needs_pickle:
            raise CheckpointError(
                f"{path}: cannot read checkpoint (truncated or corrupt file?): {type(e).__name__}: "
                f"{msg.splitlines()[0] if msg else 'unexpected end of data'}"
            ) from e
        if not trust:
            m = re.search(r"WeightsUnpickler error: (.*?)(?: Please use|$)", msg, re.M)
            detail = f" ({m.group(1).strip()})" if m else ""
            raise CheckpointError(f"{path} contains Python objects beyond tensors and plain containers{detail}; "
                                  f"{_TRUST_HINT}.") from e
    try:
        # full unpickling may run code: reached only with trust_checkpoint=True / --trust-checkpoint
        return torch.load(path, map_location="cpu", weights_only=False)  # user opt-in (trust_checkpoint)
    except Exception as e:
        raise CheckpointError(f"{path}: cannot read checkpoint even with full unpickling: "
                              f"{type(e).__name__}: {e}") from e


def _read_safetensors(path: Path) -> Checkpoint:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:
        raise CheckpointError(f"{path}: cannot read safetensors file (truncated or corrupt?): {e}") from e
    config = None
    if "acula_config" in meta:
        try:
            config = json.loads(meta["acula_config"])
        except json.JSONDecodeError as e:
            raise CheckpointError(f"{path}: malformed acula_config metadata: {e}") from e
    sidecar = path.with_suffix(".json")
    if config is None and sidecar.is_file():  # the embedded copy wins: it cannot drift from the weights
        try:
            config = json.loads(sidecar.read_text())
        except json.JSONDecodeError as e:
            raise CheckpointError(f"{sidecar}: malformed config JSON: {e}") from e
    heads: dict[str, dict[str, torch.Tensor]] = {}
    for k in [k for k in state if k.startswith(HEAD_PREFIX)]:
        name, _, sub = k[len(HEAD_PREFIX):].partition(".")
        heads.setdefault(name, {})[sub] = state.pop(k)
    if not state:
        raise CheckpointError(f"{path}: the checkpoint holds no encoder weights")
    return Checkpoint(state, heads or None, config, format="safetensors", path=str(path))


# ------------------------------------------------------------------------------------- loading
def guess_encoder(keys) -> str | None:
    """Which built-in encoder a state dict belongs to, from its key prefixes (None if unknown)."""
    keys = list(keys)
    for name, prefixes in _SIGNATURES.items():
        if any(k.startswith(p) for k in keys for p in prefixes):
            return name
    return None


def load_into(
    model: AudioEncoder,
    source: str | os.PathLike | Checkpoint,
    trust_checkpoint: bool = False,
    strict: bool = True,
    allow_missing_decoder: bool = False,
) -> LoadReport:
    """Load `source` into `model`, accounting for every key; raise `CheckpointError` on any mismatch.

    With `strict` off, only unexpected keys are tolerated (they are listed in the report); missing encoder
    weights and shape mismatches always fail. A checkpoint without the MAM decoder loads with
    `allow_missing_decoder=True` (or when its acula config says it was saved without one).
    """
    ck = read_checkpoint(source, trust_checkpoint)
    name = getattr(model, "name", type(model).__name__)
    report = LoadReport(source=str(ck.path or "<Checkpoint>"), model=name)
    own = model.state_dict()
    state = ck.encoder_state
    decoder_prefixes = tuple(getattr(model, "decoder_prefixes", ()))
    if ck.config and ck.config.get("decoder") is False:
        allow_missing_decoder = True  # the file declares itself encoder-only

    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    counters = batchnorm_counters(model)
    report.ignored_missing = [k for k in missing if k in counters or _matches(k, model.ignorable_missing)]
    missing = [k for k in missing if k not in report.ignored_missing]
    decoder_missing = [k for k in missing if k.startswith(decoder_prefixes)] if decoder_prefixes else []
    decoder_present = [k for k in state if k in own and k.startswith(decoder_prefixes)] if decoder_prefixes else []
    if allow_missing_decoder and decoder_missing and not decoder_present:
        report.missing_decoder = decoder_missing
        missing = [k for k in missing if k not in decoder_missing]
    report.ignored_unexpected = [k for k in unexpected if _matches(k, model.ignorable_unexpected)]
    unexpected = [k for k in unexpected if k not in report.ignored_unexpected]
    if not strict:
        report.ignored_unexpected += unexpected
        unexpected = []

    guess = guess_encoder(state)
    if guess and guess != name and (missing or unexpected):
        example = next(k for k in state if k.startswith(_SIGNATURES[guess]))
        report.errors.append(
            f"this looks like an {guess} checkpoint (keys such as {example!r}), not {name}: "
            f"build it with create({guess!r}, ...) / --encoder {guess}"
        )
    cfg_hint = _config_hint(ck.config, getattr(model, "config", {}) or {})
    prefix_hint = _common_prefix_hint(list(state), own)
    if prefix_hint:
        report.errors.append(prefix_hint)
    if missing:
        enc = [k for k in missing if not (decoder_prefixes and k.startswith(decoder_prefixes))]
        dec = [k for k in missing if k not in enc]
        if enc:
            report.errors.append(f"missing {len(enc)} encoder weights: {_preview(enc)}")
        if dec:
            hint = ("the checkpoint has part of the decoder only" if decoder_present else
                    "pass allow_missing_decoder=True (CLI: --allow-missing-decoder) to load an encoder-only checkpoint")
            report.errors.append(f"missing {len(dec)} MAM decoder weights: {_preview(dec)} ({hint})")
    if unexpected:
        report.errors.append(f"{len(unexpected)} unexpected keys: {_preview(unexpected)}")
    for k in own:
        if k in state and tuple(state[k].shape) != tuple(own[k].shape):
            report.errors.append(f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}")
    report.loaded = [k for k in own if k in state and tuple(state[k].shape) == tuple(own[k].shape)]
    if report.errors:
        if cfg_hint:
            report.errors.append(cfg_hint)
        raise CheckpointError(f"checkpoint does not fit the model:\n{report}")

    bad = [k for k in report.loaded if state[k].is_floating_point() and not torch.isfinite(state[k]).all()]
    if bad:
        report.errors.append(f"non-finite values (NaN/inf) in {_preview(bad)}")
        raise CheckpointError(f"checkpoint is corrupt:\n{report}")
    merged = {**own, **{k: state[k] for k in report.loaded}}
    model.load_state_dict(merged, strict=True)
    return report


def batchnorm_counters(model: nn.Module) -> set[str]:
    """State-dict keys of BatchNorm's `num_batches_tracked` counters. They count training steps, only to average
    running statistics when momentum is None, and never enter an evaluation-mode output; a checkpoint without
    them (older PyTorch, other frameworks) loads with the model's own counters, listed as recomputable."""
    return {f"{name}.num_batches_tracked" if name else "num_batches_tracked" for name, m in model.named_modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.num_batches_tracked is not None}


def _config_hint(saved: dict | None, built: dict) -> str | None:
    enc = (saved or {}).get("encoder")
    if not isinstance(enc, dict) or not built:
        return None
    if json.loads(json.dumps(enc, default=str)) != json.loads(json.dumps(built, default=str)):
        return f"the checkpoint was saved from encoder {enc}, the model was built as {built}"
    return None


def _common_prefix_hint(keys: list[str], own: dict) -> str | None:
    """'module.' / 'model.' style wrappers: say which prefix to strip instead of listing 400 keys."""
    if not keys or any(k in own for k in keys):
        return None
    first = keys[0].split(".", 1)[0] + "."
    if all(k.startswith(first) for k in keys) and sum(k[len(first):] in own for k in keys) > len(keys) // 2:
        return f"every checkpoint key starts with {first!r}: strip that prefix (e.g. re-save the inner state dict)"
    return None


# ------------------------------------------------------------------------------------- saving
def encoder_config(model: AudioEncoder, decoder: bool = True) -> dict[str, Any]:
    """What a later `load_encoder` needs to rebuild `model` (registry name and options)."""
    from .._version import __version__

    built = dict(getattr(model, "config", {}) or {})
    built.setdefault("name", getattr(model, "name", type(model).__name__))
    return {
        "format": FORMAT, "format_version": FORMAT_VERSION, "acula_version": __version__,
        "encoder": built, "feature_dim": model.feature_dim, "contract": model.contract.to_dict(), "decoder": decoder,
    }


def save_encoder(
    model: AudioEncoder,
    path: str | os.PathLike,
    projection_heads: dict[str, dict[str, torch.Tensor]] | None = None,
    include_decoder: bool = True,
    extra_config: dict[str, Any] | None = None,
    config_path: str | os.PathLike | None = None,
) -> Path:
    """Write `model`'s weights as safetensors (config JSON in its metadata) plus a sidecar `<stem>.json`
    (or `config_path`); `extra_config` (teacher, heads, training, ... for `acula publish`) joins the config."""
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"{path}: encoder files are written as .safetensors")
    prefixes = tuple(getattr(model, "decoder_prefixes", ()))
    tensors = {k: v.detach().cpu().clone().contiguous() for k, v in model.state_dict().items()
               if include_decoder or not (prefixes and k.startswith(prefixes))}
    for name, state in (projection_heads or {}).items():
        tensors.update({f"{HEAD_PREFIX}{name}.{k}": v.detach().cpu().clone().contiguous() for k, v in state.items()})
    config = json.dumps({**encoder_config(model, decoder=include_decoder or not prefixes), **(extra_config or {})},
                        indent=2, default=str)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"acula_config": config})
    write_text(Path(config_path) if config_path else path.with_suffix(".json"), config + "\n")
    return path


def load_encoder(source: str | os.PathLike | Checkpoint, trust_checkpoint: bool = False) -> AudioEncoder:
    """Rebuild and load an encoder from a checkpoint that carries an acula config (e.g. `save_encoder` output)."""
    from .registry import create

    ck = read_checkpoint(source, trust_checkpoint)
    enc = (ck.config or {}).get("encoder")
    if not isinstance(enc, dict) or "name" not in enc:
        raise CheckpointError(f"{ck.path}: no acula encoder config; build the encoder with "
                              "create(name, checkpoint=...) instead")
    options = {k: v for k, v in enc.items() if k != "name"}
    model = create(enc["name"], **options)
    load_into(model, ck)
    return model


def convert(
    source: str | os.PathLike,
    out_path: str | os.PathLike,
    encoder_name: str,
    trust_checkpoint: bool = False,
    allow_missing_decoder: bool = False,
    **options: Any,
) -> LoadReport:
    """Read any supported checkpoint, load it strictly into `encoder_name`, write safetensors + JSON."""
    from .registry import create

    ck = read_checkpoint(source, trust_checkpoint)
    model = create(encoder_name, **options)
    report = load_into(model, ck, allow_missing_decoder=allow_missing_decoder)
    save_encoder(model, out_path, projection_heads=ck.projection_heads, include_decoder=not report.missing_decoder)
    return report
