"""The published AcuLa training step and OPERA's feature extraction, re-created for timing. Benchmark-only code.
What it re-creates: docs/protocol.md#front-end, #input-policies, #alignment-model and #alignment-loss.

It keeps everything of the published loop that costs time, because that is what the benchmark compares:

* every `__getitem__` decodes the file with `librosa.load(sr=16000)`, pads/crops it to 131000 samples and
  recomputes the log-mel (`melspectrogram` -> `power_to_db(ref=max)` -> min-max), nothing is cached;
* every step tokenises its reports (`report.lower()`, padded to `max_length=128`) and runs the frozen LM
  loaded as `AutoModelForCausalLM` (so full-vocabulary logits at all 128 positions) with
  `output_hidden_states=True`, then mean-pools the last hidden state over all positions, padding included;
* two encoder passes: the MAE `forward` (70 % random masking, Swin decoder, masked-patch MSE) and a second,
  unmasked `forward_feature`;
* the feature-Gram "CKA" loss + MAM, AdamW over every trainable parameter (no groups), linear warm-up,
  `clip_grad_norm_` over `model.parameters()` (the LM's too), `model.train()` on the whole module.

OPERA's `extract_opera_feature` (docs/protocol.md#downstream-windows), the published way to get embeddings from files:
per file `librosa.load(sr=16000)`, `librosa.effects.trim`, then for OPERA-GT `split_pad_sample` (8.18-s windows at
50 % overlap plus a repeat-padded last chunk), one log-mel per chunk and one `forward_feature` per chunk (batch 1),
averaged; for OPERA-CE/CT the whole trimmed recording (repeat-padded to 8 s when shorter) in one batch-1 pass.

One substitution: the MAE is acula's OPERA-GT (`create("opera-gt", preset="base")`), which has the published
architecture, parameter count and FLOPs; the original needs a patched timm that is not a dependency here.
The data loader runs in the main process (`num_workers=0`): the published run uses 4 workers, which only
hides loading behind compute when spare cores exist (none on the 2-core benchmark machine).
"""

from __future__ import annotations

import random
import time
from itertools import chain

import numpy as np
import torch
from torch import nn

from acula.align.losses import cka_feature
from acula.align.model import ProjectionMLP
from acula.encoders.base import AudioEncoder

SAMPLE_RATE = 16000
TARGET_SAMPLES = 8 * SAMPLE_RATE + 3000  # `audio_input_sec * 16000 + 3000` -> 256 frames
MAX_TEXT_LENGTH = 128


def pre_process_audio_mel_t(y: np.ndarray, sr: int = SAMPLE_RATE) -> np.ndarray:
    """OPERA's `pre_process_audio_mel_t`: melspectrogram -> power_to_db(ref=max) -> min-max -> (T, 64).

    docs/protocol.md#front-end
    """
    import librosa  # imported here: machines without librosa (the GPU one) still run everything else

    mel = librosa.feature.melspectrogram(y=y, sr=sr, n_fft=1024, hop_length=512, n_mels=64, fmin=50, fmax=8000)
    db = librosa.power_to_db(mel, ref=np.max)
    if db.max() != db.min():
        db = (db - db.min()) / (db.max() - db.min())
    return db.T.astype(np.float32)


def published_logmel(path: str) -> np.ndarray:
    """`AudioTextPairDataset` audio: librosa load, first 131000 samples (zero-padded), OPERA's log-mel -> (T, 64)."""
    import librosa

    y, sr = librosa.load(path, sr=SAMPLE_RATE)
    if len(y) < TARGET_SAMPLES:
        y = np.pad(y, (0, TARGET_SAMPLES - len(y)))
    else:
        y = y[:TARGET_SAMPLES]
    return pre_process_audio_mel_t(y, sr)


# ----------------------------------------------------------------------------------------------------------
# OPERA `extract_opera_feature` (src/util.py + src/benchmark/model_util.py), docs/protocol.md#downstream-windows


def _duplicate_padding(sample: np.ndarray, source: np.ndarray, output_length: int) -> np.ndarray:
    """OPERA `_duplicate_padding(types="repeat")`: `source` at the end, the front filled with the tail of the
    recording tiled; `random.seed(7456)` then `random.random() < 0.5` always takes this branch (and, as in
    OPERA, re-seeds Python's global random)."""
    random.seed(7456)
    assert random.random() < 0.5
    left = output_length - len(source)
    prefix = sample[-left:] if left <= len(sample) else np.tile(sample, -(-left // len(sample)))[-left:]
    return np.concatenate([prefix, source]).astype(np.float32)


def split_pad_sample(y: np.ndarray, desired_length: float, sr: int) -> list[np.ndarray]:
    """OPERA `split_pad_sample(types="repeat")`: windows at 50 % overlap plus a repeat-padded final chunk."""
    import librosa

    output_length = int(desired_length * sr)
    if len(y) > output_length:
        frames = librosa.util.frame(y, frame_length=output_length, hop_length=output_length // 2, axis=0)
        out = [np.asarray(f, dtype=np.float32) for f in frames]
        out.append(_duplicate_padding(y, y[frames.shape[0] * (output_length // 2):], output_length))
        return out
    return [_duplicate_padding(y, y, output_length)]


def opera_load_trimmed(path: str) -> np.ndarray:
    """`librosa.load(sr=16000)` then `librosa.effects.trim(frame_length=1600, hop_length=800)` (top_db 60)."""
    import librosa

    y, _ = librosa.load(path, sr=SAMPLE_RATE)
    return librosa.effects.trim(y, frame_length=int(SAMPLE_RATE / 10), hop_length=int(SAMPLE_RATE / 20))[0]


@torch.inference_mode()
def extract_opera_feature(paths: list[str], model: AudioEncoder, kind: str, input_sec: float = 8.18,
                          min_sec: float = 8.0, times: dict[str, float] | None = None) -> np.ndarray:
    """(N, D) features the published way, one file and one chunk at a time (batch 1); `times` collects seconds
    per stage (load = decode + resample, trim + windows, log-mel, encoder).

    kind "gt": `get_split_signal_librosa(input_sec)` chunks, one `forward_feature` each, mean over chunks.
    kind "whole" (OPERA-CE/CT): `get_entire_signal_librosa(input_sec=min_sec, pad=True)`: the whole trimmed
    recording (repeat-padded when shorter than `min_sec`), one log-mel, one pass.
    """
    times = times if times is not None else {}
    device = next(model.parameters()).device
    out = []

    def lap(name: str, t0: float) -> float:
        now = time.perf_counter()
        times[name] = times.get(name, 0.0) + now - t0
        return now

    for path in paths:
        t = time.perf_counter()
        y = opera_load_trimmed(path)
        t = lap("load + trim", t)
        if kind == "gt":
            chunks = split_pad_sample(y, input_sec, SAMPLE_RATE)
        else:
            chunks = [y if len(y) >= int(min_sec * SAMPLE_RATE) else split_pad_sample(y, min_sec, SAMPLE_RATE)[0]]
        t = lap("windows", t)
        mels = [pre_process_audio_mel_t(c) for c in chunks]
        t = lap("log-mel", t)
        feats = [model.forward_feature(torch.tensor(np.array([m])).to(device)).float() for m in mels]  # batch 1
        out.append(torch.cat(feats).mean(0).cpu().numpy())
        lap("encoder", t)
    return np.stack(out)


def load_causal_lm(source: str, gguf_file: str | None, device: torch.device, causal: bool = True):
    """`AutoModelForCausalLM.from_pretrained(..., torch_dtype=bf16 on CUDA)`, frozen; tokenizer pads right with eos.

    `causal=False` loads an encoder-only fallback (e.g. MiniLM) with `AutoModel`: it has no causal-LM head.
    """
    from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer

    kw = {"gguf_file": gguf_file} if gguf_file else {}
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    tokenizer = AutoTokenizer.from_pretrained(source, **kw)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    lm = (AutoModelForCausalLM if causal else AutoModel).from_pretrained(source, dtype=dtype, **kw).to(device)
    lm.requires_grad_(False)
    return lm, tokenizer


def tokenize(tokenizer, reports: list[str]) -> dict[str, torch.Tensor]:
    """Per item `report.lower()`, padded to 128 tokens; the default collate stacks the items."""
    enc = tokenizer([r.lower() for r in reports], padding="max_length", truncation=True,
                    max_length=MAX_TEXT_LENGTH, return_tensors="pt")
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}


@torch.no_grad()
def lm_features(lm, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Last hidden state mean-pooled over every position, padding included, as fp32 (the published bug:
    docs/protocol.md#published-bugs, item 2)."""
    out = lm(input_ids=input_ids, attention_mask=attention_mask.float(), output_hidden_states=True)
    return torch.mean(out.hidden_states[-1], dim=1).float()


class PublishedPairs:
    """`AudioTextPairDataset` + default collate: audio re-decoded and text re-tokenised on every access."""

    def __init__(self, paths: list, reports: list[str], tokenizer):
        """`tokenizer(reports) -> {"input_ids", "attention_mask"}` padded to 128 (e.g. `tokenize` bound to a HF
        tokenizer). `paths` may hold (T, 64) log-mel arrays instead, where librosa is missing (then the published
        step's decoding is not timed)."""
        if len(paths) != len(reports):
            raise ValueError(f"{len(paths)} audio paths but {len(reports)} reports")
        self.paths, self.reports, self.tokenizer = paths, reports, tokenizer

    def __len__(self) -> int:
        return len(self.paths)

    def batch(self, idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mel = torch.from_numpy(np.stack([self.logmel(i) for i in idx]))
        tok = self.tokenizer([self.reports[i] for i in idx])
        return mel, tok["input_ids"], tok["attention_mask"]

    def logmel(self, i: int) -> np.ndarray:
        """Decoded again at every access, as published; an in-memory input (no audio libraries) is just returned."""
        p = self.paths[i]
        return p if isinstance(p, np.ndarray) else published_logmel(p)


class PublishedStep(nn.Module):
    """The `main.py` model and one optimiser step, with wall-clock time per phase.

    The language head's width comes from the LM (the published 2048 would not even run with SmolLM2 or
    MedGemma-4B); its cost is negligible either way.
    """

    def __init__(self, encoder: AudioEncoder, lm, lr: float = 1e-5, weight_decay: float = 1e-2,
                 warmup_steps: int = 400, total_steps: int = 1000, clip_norm: float = 1.0, lm_features_fn=None):
        """`lm_features_fn(lm, input_ids, attention_mask)` replaces `lm_features` (e.g. a long mask for Gemma-3)."""
        super().__init__()
        self.lm_features_fn = lm_features_fn or lm_features
        self.audio_model = encoder
        self.lm = lm
        self.audio_mlp = ProjectionMLP(encoder.feature_dim, 1024, 512)
        self.lang_mlp = ProjectionMLP(lm.config.get_text_config().hidden_size, 1024, 512)
        self.clip_norm = clip_norm
        params = [p for p in chain(encoder.parameters(), self.audio_mlp.parameters(), self.lang_mlp.parameters())
                  if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
        # transformers' get_linear_schedule_with_warmup
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer,
            lambda s: s / max(1, warmup_steps) if s < warmup_steps
            else max(0.0, (total_steps - s) / max(1, total_steps - warmup_steps)))

    def step(self, data: PublishedPairs, idx: np.ndarray, device: torch.device) -> dict[str, float]:
        """One step on the items `idx`; returns seconds per phase (load, lm, forward, backward, optimizer)."""
        sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
        times, t = {}, time.perf_counter()

        def lap(name: str) -> None:
            nonlocal t
            sync()
            now = time.perf_counter()
            times[name] = now - t
            t = now

        self.train()  # as published: flips the frozen LM to train mode too (Gemma-3 and SmolLM2 have no dropout)
        mel, input_ids, attention_mask = data.batch(idx)
        mel = mel.clone().to(device)  # the published `torch.tensor(mel)` re-wrap: a copy (without its warning)
        input_ids, attention_mask = input_ids.to(device), attention_mask.to(device)
        lap("load")
        text = self.lm_features_fn(self.lm, input_ids, attention_mask)
        lap("lm")
        mam_loss = self.audio_model.forward_mam(mel)[0]
        audio = self.audio_mlp(self.audio_model.forward_feature(mel).float())
        loss = (1.0 - cka_feature(audio, self.lang_mlp(text))) + mam_loss
        lap("forward")
        loss.backward()
        lap("backward")
        torch.nn.utils.clip_grad_norm_(self.parameters(), self.clip_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad()
        lap("optimizer")
        if not torch.isfinite(loss):
            raise FloatingPointError(f"published-style step: non-finite loss {float(loss)}")
        return times
