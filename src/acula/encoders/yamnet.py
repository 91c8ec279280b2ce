"""YAMNet (Google's AudioSet MobileNet-v1) in PyTorch, with weights read from its TFLite export.

YAMNet = log-mel front end (25 ms periodic-Hann STFT every 10 ms, 64 HTK mel bands 125-7500 Hz,
log(mel + 0.001)) -> 0.96 s patches (96 frames, hop 48) -> MobileNet-v1 (a 3x3/2 conv and 13
depthwise-separable blocks, BatchNorm folded into conv biases, ReLU, TF "SAME" padding) -> global
mean -> 1024-d embedding per patch -> dense 521 + sigmoid (AudioSet classes).

The TFLite file stores int8 weights with float scales; `convert_tflite` dequantises them and checks
every op of the graph (type, stride, padding, activation, channels) and every front-end constant
(window, hop, FFT size, log offset, mel matrix) against this implementation, so a different export
fails loudly instead of loading into the wrong layers. The front end here is computed in float
(exact DFT and mel matrix); the TFLite graph uses int8-quantised DFT/mel matrices, which is the
main source of disagreement with the TFLite interpreter (see tests/test_yamnet.py).

The product never looks for the weights itself: the user passes `weights=` (a `.tflite` file or a
`.safetensors` file written by `save_safetensors`).
"""

from __future__ import annotations

import csv
import json
import math
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .._io import atomic_path, sha256_file
from .base import AudioEncoder, InputContract
from .registry import register

# Published YAMNet parameters (tensorflow/models research/audioset/yamnet/params.py).
SAMPLE_RATE = 16000
STFT_WINDOW_SECONDS = 0.025
STFT_HOP_SECONDS = 0.010
MEL_BANDS = 64
MEL_MIN_HZ = 125.0
MEL_MAX_HZ = 7500.0
LOG_OFFSET = 0.001
PATCH_WINDOW_SECONDS = 0.96
PATCH_HOP_SECONDS = 0.48

# (kind, stride, output channels at width 1) for layer1..layer14, as in YAMNet's _YAMNET_LAYER_DEFS.
LAYERS = (
    ("conv", 2, 32),
    ("sep", 1, 64),
    ("sep", 2, 128),
    ("sep", 1, 128),
    ("sep", 2, 256),
    ("sep", 1, 256),
    ("sep", 2, 512),
    ("sep", 1, 512),
    ("sep", 1, 512),
    ("sep", 1, 512),
    ("sep", 1, 512),
    ("sep", 1, 512),
    ("sep", 2, 1024),
    ("sep", 1, 1024),
)
PRESETS = {"full": 1.0, "tiny": 1 / 16}
SAFETENSORS_FORMAT = "acula-yamnet/1"


# ---- front end ---------------------------------------------------------------------------------


def mel_matrix(
    n_fft: int,
    n_mels: int = MEL_BANDS,
    sample_rate: int = SAMPLE_RATE,
    fmin: float = MEL_MIN_HZ,
    fmax: float = MEL_MAX_HZ,
) -> torch.Tensor:
    """(n_fft//2+1, n_mels) HTK triangles, as `tf.signal.linear_to_mel_weight_matrix` builds them.

    Triangles are evaluated at the bin frequencies in mel space (not Slaney-normalised), and the DC
    bin gets weight 0: the matrix YAMNet was trained with.
    """

    def hz_to_mel(hz: np.ndarray) -> np.ndarray:
        return 1127.0 * np.log1p(hz / 700.0)

    bins_mel = hz_to_mel(np.linspace(0.0, sample_rate / 2.0, n_fft // 2 + 1)[1:])[:, None]
    edges = np.linspace(hz_to_mel(np.float64(fmin)), hz_to_mel(np.float64(fmax)), n_mels + 2)
    lower, center, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (bins_mel - lower) / (center - lower)
    falling = (upper - bins_mel) / (upper - center)
    w = np.maximum(0.0, np.minimum(rising, falling))
    return torch.from_numpy(np.concatenate([np.zeros((1, n_mels)), w], 0).astype(np.float32))


class YAMNetFrontend(nn.Module):
    """Waveform (B, N) at 16 kHz -> YAMNet log-mel (B, T, 64) and 0.96 s patches (B, P, 96, 64)."""

    def __init__(self):
        super().__init__()
        self.win = round(SAMPLE_RATE * STFT_WINDOW_SECONDS)  # 400
        self.hop = round(SAMPLE_RATE * STFT_HOP_SECONDS)  # 160
        self.n_fft = 2 ** math.ceil(math.log2(self.win))  # 512
        frame_rate = SAMPLE_RATE / self.hop
        self.patch_frames = round(frame_rate * PATCH_WINDOW_SECONDS)  # 96
        self.patch_hop_frames = round(frame_rate * PATCH_HOP_SECONDS)  # 48
        # shortest waveform that yields one patch: 96 hops plus the rest of the last window (15600)
        self.min_samples = (self.patch_frames - 1) * self.hop + self.win
        self.patch_hop_samples = self.patch_hop_frames * self.hop  # 7680
        n = torch.arange(self.win, dtype=torch.float64)
        self.register_buffer("window", (0.5 - 0.5 * torch.cos(2 * math.pi * n / self.win)).float(), persistent=False)
        self.register_buffer("mel", mel_matrix(self.n_fft), persistent=False)

    def pad(self, wave: torch.Tensor) -> torch.Tensor:
        """Zero-pad at the end to one whole patch plus a whole number of patch hops (YAMNet's pad_waveform)."""
        n = wave.shape[-1]
        extra = max(n, self.min_samples) - self.min_samples
        target = self.min_samples + math.ceil(extra / self.patch_hop_samples) * self.patch_hop_samples
        return F.pad(wave, (0, target - n))

    def log_mel(self, wave: torch.Tensor) -> torch.Tensor:
        """(B, N) -> (B, 1 + (N-400)//160, 64); no centring, like tf.signal.stft."""
        frames = wave.unfold(-1, self.win, self.hop) * self.window
        magnitude = torch.fft.rfft(frames, n=self.n_fft).abs()
        return torch.log(magnitude @ self.mel + LOG_OFFSET)

    def patches(self, wave: torch.Tensor) -> torch.Tensor:
        """(B, N) -> (B, P, 96, 64) with P = 1 + ceil(max(0, N - 15600) / 7680)."""
        mel = self.log_mel(self.pad(wave))
        return mel.unfold(1, self.patch_frames, self.patch_hop_frames).transpose(-1, -2)


# ---- MobileNet-v1 backbone ---------------------------------------------------------------------


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow "SAME" padding: output = ceil(input / stride), odd padding goes after."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size, k, s in zip(reversed(x.shape[-2:]), reversed(self.kernel_size), reversed(self.stride), strict=True):
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]
        return super().forward(F.pad(x, pads))


class SeparableBlock(nn.Module):
    """Depthwise 3x3 (stride s) + ReLU, pointwise 1x1 + ReLU; BatchNorm is folded into the biases."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.depthwise = SameConv2d(c_in, c_in, 3, stride=stride, groups=c_in)
        self.pointwise = SameConv2d(c_in, c_out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.pointwise(F.relu(self.depthwise(x))))


class StemConv(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv = SameConv2d(c_in, c_out, 3, stride=stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv(x))


def layer_channels(width_mult: float) -> list[int]:
    """Channels per layer; at least 8, since PyTorch's depthwise conv is very slow below that."""
    return [max(8, int(c * width_mult)) for _, _, c in LAYERS]


# ---- masked-spectrogram reconstruction head (MAM) ----------------------------------------------


class MaskedTileHead(nn.Module):
    """Reconstruct every tile of a spectrogram patch from one pooled embedding.

    Global-pool encoders keep no per-position tokens, so each tile is decoded from the embedding
    plus a learned tile-position vector: `out(proj(z) + pos_l)`. Small on purpose (it is a
    regulariser, discarded after alignment).
    """

    def __init__(self, dim: int, n_tiles: int, tile_pixels: int, hidden: int = 256):
        super().__init__()
        self.proj = nn.Linear(dim, hidden)
        self.pos = nn.Parameter(torch.randn(n_tiles, hidden) * 0.02)
        self.out = nn.Sequential(nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, tile_pixels))

    def forward(self, z: torch.Tensor) -> torch.Tensor:  # (N, dim) -> (N, n_tiles, tile_pixels)
        return self.out(self.proj(z)[:, None, :] + self.pos)


def to_tiles(x: torch.Tensor, tile: tuple[int, int]) -> torch.Tensor:
    """(N, T, F) -> (N, (T/t)*(F/f), t*f), tiles in time-major order."""
    n, t, f = x.shape
    a, b = tile
    return x.reshape(n, t // a, a, f // b, b).permute(0, 1, 3, 2, 4).reshape(n, (t // a) * (f // b), a * b)


def from_tiles(x: torch.Tensor, tile: tuple[int, int], shape: tuple[int, int]) -> torch.Tensor:
    """Inverse of `to_tiles`."""
    n = x.shape[0]
    (a, b), (t, f) = tile, shape
    return x.reshape(n, t // a, f // b, a, b).permute(0, 1, 3, 2, 4).reshape(n, t, f)


def masked_tile_loss(
    spec: torch.Tensor,
    encode: Callable[[torch.Tensor], torch.Tensor],
    head: MaskedTileHead,
    tile: tuple[int, int],
    mask_ratio: float,
    noise: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """MAE-style masked-spectrogram loss for an encoder that pools to one vector.

    `spec` (N, T, F) is cut into tiles (a trailing remainder of frames / bins that fills no whole
    tile is never masked); a random `mask_ratio` of the tiles (highest `noise` per row, as in MAE's
    argsort) is replaced by the row mean; `encode` maps the masked (N, T, F) input to (N, D);
    `head` predicts every tile of the row-standardised spectrogram; the loss is the MSE over
    masked tiles only. Returns (loss, pred (N, L, t*f), mask (N, L) with 1 = masked).
    """
    n, t, f = spec.shape
    a, b = tile
    tt, ff = t // a * a, f // b * b
    if tt == 0 or ff == 0:
        raise ValueError(f"MAM tile {tile} is larger than the spectrogram {(t, f)}")
    mean = spec.mean(dim=(1, 2), keepdim=True)
    std = spec.std(dim=(1, 2), keepdim=True) + 1e-5
    target = to_tiles(((spec - mean) / std)[:, :tt, :ff], tile)
    n_tiles = target.shape[1]
    if noise is None:
        noise = torch.rand(n, n_tiles, device=spec.device)
    elif noise.shape != (n, n_tiles):
        raise ValueError(f"MAM noise must have shape {(n, n_tiles)}, got {tuple(noise.shape)}")
    n_masked = min(n_tiles - 1, max(1, round(n_tiles * mask_ratio)))
    rank = noise.argsort(dim=1).argsort(dim=1)
    mask = (rank >= n_tiles - n_masked).to(spec.dtype)
    keep = F.pad(from_tiles((1 - mask)[..., None].expand_as(target), tile, (tt, ff)), (0, f - ff, 0, t - tt), value=1.0)
    pred = head(encode(spec * keep + mean * (1 - keep)))
    loss = ((pred - target) ** 2).mean(-1)
    return (loss * mask).sum() / mask.sum(), pred, mask


# ---- the encoder -------------------------------------------------------------------------------


class YAMNet(AudioEncoder):
    """YAMNet on raw 16 kHz waveforms: mean patch embedding (B, feature_dim) and AudioSet scores."""

    contract = InputContract(sample_rate=SAMPLE_RATE, frontend="waveform", n_mels=MEL_BANDS, max_frames=None)

    def __init__(
        self,
        width_mult: float = 1.0,
        num_classes: int = 521,
        class_names: list[str] | None = None,
        mam_mask_ratio: float = 0.5,
        mam_tile: tuple[int, int] = (16, 16),
        mam_hidden: int = 256,
    ):
        super().__init__()
        self.width_mult = width_mult
        self.frontend = YAMNetFrontend()
        channels = layer_channels(width_mult)
        layers, c_in = OrderedDict(), 1
        for k, ((kind, stride, _), c_out) in enumerate(zip(LAYERS, channels, strict=True), start=1):
            layers[f"layer{k}"] = (
                StemConv(c_in, c_out, stride) if kind == "conv" else SeparableBlock(c_in, c_out, stride)
            )
            c_in = c_out
        self.backbone = nn.Sequential(layers)
        self.feature_dim = c_in
        self.classifier = nn.Linear(c_in, num_classes)
        self._init_random()
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"yamnet: {len(class_names)} class names for {num_classes} classes")
        self.class_names = class_names
        self.mam_mask_ratio = mam_mask_ratio
        self.mam_tile = tuple(mam_tile)
        shape = (self.frontend.patch_frames, MEL_BANDS)
        n_tiles = (shape[0] // self.mam_tile[0]) * (shape[1] // self.mam_tile[1])
        self.mam_head = MaskedTileHead(c_in, n_tiles, self.mam_tile[0] * self.mam_tile[1], mam_hidden)
        # the MAM head is trained during alignment only: converted YAMNet weights never contain it
        self.ignorable_missing = tuple(f"mam_head.{k}" for k in self.mam_head.state_dict())
        self.decoder_prefixes = ("mam_head.",)
        self.source_sha256 = ""  # of the file the weights were converted from, kept in saved copies

    def _init_random(self) -> None:
        """He init, zero biases: keeps a random (tiny) net's activations alive through 27 ReLU convs."""
        for m in self.backbone.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)

    # -- inference --

    def embed_patches(self, patches: torch.Tensor) -> torch.Tensor:
        """(N, 96, 64) log-mel patches -> (N, feature_dim)."""
        return self.backbone(patches[:, None]).mean(dim=(2, 3))

    def forward_patches(self, wave: torch.Tensor) -> torch.Tensor:
        """(B, N) -> (B, P, feature_dim), one embedding per 0.96 s patch (hop 0.48 s)."""
        self.check_input(wave)
        patches = self.frontend.patches(wave.float())
        b, p = patches.shape[:2]
        return self.embed_patches(patches.flatten(0, 1)).view(b, p, -1)

    def forward_feature(self, wave: torch.Tensor) -> torch.Tensor:
        """(B, N) -> (B, feature_dim): mean of the patch embeddings (clips < 0.975 s are zero-padded)."""
        return self.forward_patches(wave).mean(dim=1)

    @torch.no_grad()
    def predict(self, wave: torch.Tensor) -> torch.Tensor:
        """(B, N) -> (B, P, num_classes) AudioSet scores (sigmoid), one row per patch."""
        return torch.sigmoid(self.classifier(self.forward_patches(wave)))

    # -- masked-audio modelling --

    def forward_mam(
        self, wave: torch.Tensor, noise: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Mask random 16x16 time-frequency tiles of each log-mel patch and reconstruct them.

        `noise` (B, P*L) picks the masked tiles (highest values masked); returns
        (loss, pred (B, P*L, t*f) in standardised log-mel units, mask (B, P*L), 1 = masked).
        """
        self.check_input(wave)
        patches = self.frontend.patches(wave.float())
        b, p = patches.shape[:2]
        n_tiles = self.mam_head.pos.shape[0]
        if noise is not None and tuple(noise.shape) != (b, p * n_tiles):
            raise ValueError(
                f"yamnet: MAM noise must have shape (batch, patches * tiles) = {(b, p * n_tiles)}, "
                f"got {tuple(noise.shape)}"
            )
        flat_noise = None if noise is None else noise.reshape(b * p, n_tiles)
        loss, pred, mask = masked_tile_loss(
            patches.flatten(0, 1), self.embed_patches, self.mam_head, self.mam_tile, self.mam_mask_ratio, flat_noise
        )
        return loss, pred.reshape(b, -1, pred.shape[-1]), mask.reshape(b, -1)

    # -- weights --

    def weights_state_dict(self) -> dict[str, torch.Tensor]:
        """Backbone + classifier: what a converted YAMNet file holds (no MAM head)."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith("mam_head.")}

    def load_weights(self, state: dict[str, torch.Tensor], source: str) -> None:
        """Load backbone + classifier strictly; name the file and the offending keys on mismatch."""
        own = self.weights_state_dict()
        missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
        if missing or unexpected:
            raise ValueError(f"{source}: not a YAMNet state dict (missing {missing[:5]}, unexpected {unexpected[:5]})")
        for k, v in state.items():
            if tuple(v.shape) != tuple(own[k].shape):
                raise ValueError(
                    f"{source}: {k} has shape {tuple(v.shape)}, this YAMNet (width {self.width_mult}) "
                    f"expects {tuple(own[k].shape)}"
                )
        # every key and shape was checked above; only the MAM head (never in converted weights) is absent
        self.load_state_dict(state, strict=False)  # keys and shapes checked above; only mam_head.* may be absent

    def save_safetensors(self, path: str | Path) -> None:
        """Write backbone + classifier weights (and class names) to `path` atomically."""
        from safetensors.torch import save_file

        meta = {"format": SAFETENSORS_FORMAT, "width_mult": repr(self.width_mult), "source_sha256": self.source_sha256}
        if self.class_names is not None:
            meta["class_names"] = json.dumps(self.class_names)
        tensors = {k: v.detach().contiguous().cpu() for k, v in self.weights_state_dict().items()}
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata=meta)


# ---- TFLite conversion -------------------------------------------------------------------------


def convert_tflite(path: str | Path) -> tuple[dict[str, torch.Tensor], float]:
    """Read a YAMNet `.tflite` file into this module's state-dict layout; return (state, width_mult).

    Walks the graph's CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED ops in order and checks each
    against `LAYERS`; weights reached through a DEQUANTIZE op, or stored int8 with scales, are
    dequantised. TFLite kernels are OHWI (conv) and 1HWC (depthwise); torch wants OIHW.
    """
    from .tflite_reader import TFLiteModel

    m = TFLiteModel(path)
    where = m.path
    produced_by = {o: op for op in m.ops for o in op.outputs}

    def weight(index: int) -> np.ndarray:
        op = produced_by.get(index)
        if op is not None and op.op == "DEQUANTIZE":
            index = op.inputs[0]
        return m.array(index)

    _check_tflite_frontend(m)
    convs = [op for op in m.ops if op.op in ("CONV_2D", "DEPTHWISE_CONV_2D")]
    expected_ops = sum(1 if kind == "conv" else 2 for kind, _, _ in LAYERS)
    if len(convs) != expected_ops:
        raise ValueError(f"{where}: expected {expected_ops} conv ops for YAMNet's 14 layers, found {len(convs)}")
    state: dict[str, torch.Tensor] = {}
    width = None
    it = iter(convs)
    for k, (kind, stride, c_full) in enumerate(LAYERS, start=1):
        parts = (
            [("conv", "CONV_2D", stride)]
            if kind == "conv"
            else [("depthwise", "DEPTHWISE_CONV_2D", stride), ("pointwise", "CONV_2D", 1)]
        )
        for name, op_name, s in parts:
            op = next(it)
            got = (
                op.op,
                op.options.get("stride_h"),
                op.options.get("stride_w"),
                op.options.get("padding"),
                op.options.get("activation"),
            )
            if got != (op_name, s, s, "SAME", "RELU"):
                raise ValueError(
                    f"{where}: op {op.index} for layer{k}.{name} is {got}, expected {(op_name, s, s, 'SAME', 'RELU')}"
                )
            w, b = weight(op.inputs[1]), m.array(op.inputs[2])
            if op_name == "CONV_2D":
                w = w.transpose(0, 3, 1, 2)  # OHWI -> OIHW
            else:
                w = w[0].transpose(2, 0, 1)[:, None]  # 1HWC -> C1HW
            state[f"backbone.layer{k}.{name}.weight"] = torch.from_numpy(np.ascontiguousarray(w))
            state[f"backbone.layer{k}.{name}.bias"] = torch.from_numpy(b)
        c_out = state[f"backbone.layer{k}.{parts[-1][0]}.weight"].shape[0]
        width = width or c_out / c_full
        if c_out != layer_channels(width)[k - 1]:
            raise ValueError(f"{where}: layer{k} has {c_out} output channels, expected {layer_channels(width)[k - 1]}")
    mean_out = [op.outputs[0] for op in m.ops if op.op == "MEAN"]
    dense = [op for op in m.ops if op.op == "FULLY_CONNECTED" and op.inputs[0] in mean_out]
    if len(dense) != 1:
        raise ValueError(f"{where}: expected one FULLY_CONNECTED classifier after the global MEAN, found {len(dense)}")
    state["classifier.weight"] = torch.from_numpy(weight(dense[0].inputs[1]))
    state["classifier.bias"] = torch.from_numpy(m.array(dense[0].inputs[2]))
    return state, float(width)


def _check_tflite_frontend(m) -> None:
    """Fail if the graph's front-end constants differ from the ones `YAMNetFrontend` computes."""
    fe, where = YAMNetFrontend(), m.path
    consts = {t.index: t for t in m.tensors if t.buffer and t.dtype == "float32"}
    window = [i for i, t in consts.items() if t.shape == (1, fe.win)]
    if len(window) != 1 or not np.allclose(m.array(window[0])[0], fe.window.numpy(), atol=1e-6):
        raise ValueError(f"{where}: no periodic Hann window of {fe.win} samples in the graph")
    gathers = [op for op in m.ops if op.op == "GATHER"]
    idx = m.raw(gathers[0].inputs[1]) if gathers else None
    chunk = m.tensors[gathers[0].inputs[0]].shape[-1] if gathers else 0
    if idx is None or (idx[1, 0] - idx[0, 0]) * chunk != fe.hop or idx.shape[0] != fe.patch_frames:
        raise ValueError(f"{where}: STFT framing is not {fe.patch_frames} frames at hop {fe.hop}")
    mel_fc = [
        op
        for op in m.ops
        if op.op == "FULLY_CONNECTED" and m.tensors[op.inputs[1]].shape == (MEL_BANDS, fe.n_fft // 2 + 1)
    ]
    if len(mel_fc) != 1:
        raise ValueError(f"{where}: no ({MEL_BANDS}, {fe.n_fft // 2 + 1}) mel matrix in the graph")
    mel = m.array(mel_fc[0].inputs[1]).T
    tol = float(m.tensors[mel_fc[0].inputs[1]].scale.max(initial=0.0)) * 0.51 + 1e-6  # int8 rounding
    if np.abs(mel - fe.mel.numpy()).max() > tol:
        raise ValueError(f"{where}: mel matrix differs from HTK {MEL_BANDS} bands {MEL_MIN_HZ}-{MEL_MAX_HZ} Hz")
    offset = m.array(mel_fc[0].inputs[2])
    if not np.allclose(offset, LOG_OFFSET):
        raise ValueError(f"{where}: log offset is {offset[:3]}, expected {LOG_OFFSET}")


def read_class_map(path: str | Path) -> list[str]:
    """AudioSet class names from a YAMNet class map csv (columns index, mid, display_name)."""
    path = Path(path)
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows or "display_name" not in rows[0]:
        raise ValueError(f"{path}: expected a csv with columns index,mid,display_name")
    for i, row in enumerate(rows):
        if row.get("index") is not None and row["index"].strip() != str(i):
            raise ValueError(f"{path}: row {i + 2} has index {row['index']}, expected {i}")
    return [row["display_name"] for row in rows]


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        state = {k: f.get_tensor(k) for k in f.keys()}
    if meta.get("format") != SAFETENSORS_FORMAT:
        raise ValueError(
            f"{path}: not a converted YAMNet file (format {meta.get('format')!r}, expected {SAFETENSORS_FORMAT!r})"
        )
    return state, meta


@register("yamnet")
def create_yamnet(
    weights: str | None = None,
    preset: str = "full",
    class_map: str | None = None,
    random_init: bool = False,
    mam_mask_ratio: float = 0.5,
) -> YAMNet:
    """YAMNet from `weights` (a `.tflite` export, dequantised on load, or a converted `.safetensors`).

    `preset="tiny"` (1/16 width, random) is for tests; the full network needs `weights`, unless
    `random_init=True` because a checkpoint is about to be loaded over it. With `weights`, the
    widths come from the file and `preset` is ignored. `class_map` (csv) overrides the class names
    stored in a converted file.
    """
    if preset not in PRESETS:
        raise ValueError(f"yamnet: unknown preset {preset!r}; choose from {sorted(PRESETS)}")
    names = read_class_map(class_map) if class_map else None
    if weights is None:
        if preset == "full" and not random_init:
            raise ValueError(
                "yamnet needs weights=PATH (a yamnet .tflite file or a .safetensors file written by "
                "YAMNet.save_safetensors); pass random_init=True only to load a checkpoint over it"
            )
        return YAMNet(PRESETS[preset], class_names=names, mam_mask_ratio=mam_mask_ratio)
    path = Path(weights)
    if not path.is_file():
        raise FileNotFoundError(f"yamnet: weights file not found: {path}")
    if path.suffix == ".tflite":
        state, width = convert_tflite(path)
        source_sha = sha256_file(path)
    elif path.suffix == ".safetensors":
        state, meta = _read_safetensors(path)
        width = float(meta.get("width_mult", "1.0"))
        source_sha = meta.get("source_sha256", "")
        if names is None and "class_names" in meta:
            names = json.loads(meta["class_names"])
    else:
        raise ValueError(f"yamnet: weights must be a .tflite or .safetensors file, got {path}")
    num_classes = state["classifier.weight"].shape[0]
    if names is not None and len(names) != num_classes:
        raise ValueError(f"yamnet: {class_map or path} has {len(names)} class names, {path} has {num_classes} classes")
    model = YAMNet(width, num_classes=num_classes, class_names=names, mam_mask_ratio=mam_mask_ratio)
    model.load_weights(state, str(path))
    model.source_sha256 = source_sha
    return model


def _prepare_checkpoint(options: dict, checkpoint):
    """`create("yamnet", checkpoint=F)`: a `.tflite` file *is* the weights; any other checkpoint
    (an aligned YAMNet saved by acula) is loaded strictly over a randomly initialised network."""
    if checkpoint is None:
        return options, None
    if str(checkpoint).lower().endswith(".tflite"):
        return {**options, "weights": str(checkpoint)}, None
    if "weights" not in options:
        options = {**options, "random_init": True}
    return options, checkpoint


create_yamnet.prepare_checkpoint = _prepare_checkpoint
