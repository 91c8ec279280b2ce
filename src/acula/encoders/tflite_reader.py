"""A minimal reader for TensorFlow Lite flatbuffers: tensors, operators and weights, no TensorFlow.

Why hand-written: the only pretrained audio network we can ship tests against is a `.tflite` file,
and TensorFlow / the `flatbuffers` runtime are heavy or missing dependencies for what is ~150 lines
of table walking. Only the parts of `tensorflow/lite/schema/schema.fbs` that a weight converter
needs are decoded (Model, SubGraph, Tensor, QuantizationParameters, Operator, OperatorCode,
Buffer, and the options of the conv / fully-connected ops).

Flatbuffer layout in one paragraph: a table starts with an int32 offset back to its vtable; the
vtable lists uint16 offsets of each field inside the table (0 or past its end = default value).
Reference fields (tables, vectors, strings) hold a uint32 offset relative to their own position;
vectors start with a uint32 length.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

# TensorType enum -> numpy dtype (schema.fbs order)
_TENSOR_TYPES: dict[int, tuple[str, Any]] = {
    0: ("float32", np.float32),
    1: ("float16", np.float16),
    2: ("int32", np.int32),
    3: ("uint8", np.uint8),
    4: ("int64", np.int64),
    5: ("string", None),
    6: ("bool", np.bool_),
    7: ("int16", np.int16),
    8: ("complex64", np.complex64),
    9: ("int8", np.int8),
    10: ("float64", np.float64),
    11: ("complex128", np.complex128),
    12: ("uint64", np.uint64),
    15: ("uint32", np.uint32),
    16: ("uint16", np.uint16),
}

_NUMPY_DTYPES = dict(_TENSOR_TYPES.values())

# BuiltinOperator enum, the first 127 codes (schema.fbs order); later ones print as OP_<code>
_BUILTIN_OPS = (
    "ADD AVERAGE_POOL_2D CONCATENATION CONV_2D DEPTHWISE_CONV_2D DEPTH_TO_SPACE DEQUANTIZE "
    "EMBEDDING_LOOKUP FLOOR FULLY_CONNECTED HASHTABLE_LOOKUP L2_NORMALIZATION L2_POOL_2D "
    "LOCAL_RESPONSE_NORMALIZATION LOGISTIC LSH_PROJECTION LSTM MAX_POOL_2D MUL RELU RELU_N1_TO_1 "
    "RELU6 RESHAPE RESIZE_BILINEAR RNN SOFTMAX SPACE_TO_DEPTH SVDF TANH CONCAT_EMBEDDINGS SKIP_GRAM "
    "CALL CUSTOM EMBEDDING_LOOKUP_SPARSE PAD UNIDIRECTIONAL_SEQUENCE_RNN GATHER BATCH_TO_SPACE_ND "
    "SPACE_TO_BATCH_ND TRANSPOSE MEAN SUB DIV SQUEEZE UNIDIRECTIONAL_SEQUENCE_LSTM STRIDED_SLICE "
    "BIDIRECTIONAL_SEQUENCE_RNN EXP TOPK_V2 SPLIT LOG_SOFTMAX DELEGATE BIDIRECTIONAL_SEQUENCE_LSTM "
    "CAST PRELU MAXIMUM ARG_MAX MINIMUM LESS NEG PADV2 GREATER GREATER_EQUAL LESS_EQUAL SELECT SLICE "
    "SIN TRANSPOSE_CONV SPARSE_TO_DENSE TILE EXPAND_DIMS EQUAL NOT_EQUAL LOG SUM SQRT RSQRT SHAPE POW "
    "ARG_MIN FAKE_QUANT REDUCE_PROD REDUCE_MAX PACK LOGICAL_OR ONE_HOT LOGICAL_AND UNPACK REDUCE_MIN "
    "FLOOR_DIV REDUCE_ANY SQUARE ZEROS_LIKE FILL FLOOR_MOD RANGE RESIZE_NEAREST_NEIGHBOR LEAKY_RELU "
    "SQUARED_DIFFERENCE MIRROR_PAD ABS SPLIT_V UNIQUE CEIL REVERSE_V2 ADD_N GATHER_ND COS WHERE RANK "
    "ELU REVERSE_SEQUENCE MATRIX_DIAG QUANTIZE MATRIX_SET_DIAG ROUND HARD_SWISH IF WHILE "
    "NON_MAX_SUPPRESSION_V4 NON_MAX_SUPPRESSION_V5 SCATTER_ND SELECT_V2 DENSIFY SEGMENT_SUM BATCH_MATMUL"
).split()

PADDING = {0: "SAME", 1: "VALID"}
ACTIVATION = {0: "NONE", 1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6", 4: "TANH", 5: "SIGN_BIT"}


class _Reader:
    """Typed access to a flatbuffer byte string; positions are absolute byte offsets."""

    def __init__(self, buf: bytes):
        self.buf = buf

    def u8(self, p: int) -> int:
        return self.buf[p]

    def u16(self, p: int) -> int:
        return struct.unpack_from("<H", self.buf, p)[0]

    def i32(self, p: int) -> int:
        return struct.unpack_from("<i", self.buf, p)[0]

    def u32(self, p: int) -> int:
        return struct.unpack_from("<I", self.buf, p)[0]

    def u64(self, p: int) -> int:
        return struct.unpack_from("<Q", self.buf, p)[0]

    def deref(self, p: int) -> int:
        return p + self.u32(p)

    def field(self, table: int, i: int) -> int | None:
        """Absolute position of field `i` of `table`, or None when it is absent (default)."""
        vt = table - self.i32(table)
        slot = 4 + 2 * i
        if slot >= self.u16(vt):
            return None
        off = self.u16(vt + slot)
        return table + off if off else None

    def scalar(self, table: int, i: int, fmt: str, default: Any = 0) -> Any:
        p = self.field(table, i)
        return default if p is None else struct.unpack_from("<" + fmt, self.buf, p)[0]

    def table(self, table: int, i: int) -> int | None:
        p = self.field(table, i)
        return None if p is None else self.deref(p)

    def vector(self, table: int, i: int) -> tuple[int, int]:
        """(position of first element, length); length 0 when absent."""
        p = self.field(table, i)
        if p is None:
            return 0, 0
        v = self.deref(p)
        return v + 4, self.u32(v)

    def array(self, table: int, i: int, dtype: Any) -> np.ndarray:
        start, n = self.vector(table, i)
        return (
            np.frombuffer(self.buf, dtype=np.dtype(dtype).newbyteorder("<"), count=n, offset=start)
            if n
            else np.zeros(0, dtype)
        )

    def tables(self, table: int, i: int) -> list[int]:
        start, n = self.vector(table, i)
        return [self.deref(start + 4 * k) for k in range(n)]

    def string(self, table: int, i: int) -> str:
        p = self.table(table, i)
        if p is None:
            return ""
        n = self.u32(p)
        return self.buf[p + 4 : p + 4 + n].decode("utf-8", errors="replace")


@dataclass
class TensorInfo:
    index: int
    name: str
    shape: tuple[int, ...]
    dtype: str
    buffer: int
    scale: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    zero_point: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    quantized_dimension: int = 0

    @property
    def quantized(self) -> bool:
        return self.scale.size > 0


@dataclass
class OpInfo:
    index: int
    op: str
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    options: dict[str, Any]


class TFLiteModel:
    """The first subgraph of a `.tflite` file: `tensors`, `ops`, `inputs`, `outputs`, weight arrays."""

    def __init__(self, source: str | Path | bytes):
        if isinstance(source, (str, Path)):
            path = Path(source)
            if not path.is_file():
                raise FileNotFoundError(f"TFLite model not found: {path}")
            self.path: str = str(path)
            buf = path.read_bytes()
        else:
            self.path, buf = "<bytes>", bytes(source)
        if len(buf) < 8 or buf[4:8] != b"TFL3":
            raise ValueError(f"{self.path}: not a TFLite flatbuffer (file identifier {buf[4:8]!r}, expected b'TFL3')")
        self._r = r = _Reader(buf)
        model = r.deref(0)
        self.version: int = r.scalar(model, 0, "I")
        self.description: str = r.string(model, 3)
        self._buffers = r.tables(model, 4)
        opcodes = []
        for oc in r.tables(model, 1):
            code = max(r.scalar(oc, 0, "b"), r.scalar(oc, 3, "i"))  # deprecated byte code vs int32 code
            name = _BUILTIN_OPS[code] if code < len(_BUILTIN_OPS) else f"OP_{code}"
            opcodes.append(r.string(oc, 1) if name == "CUSTOM" else name)
        subgraphs = r.tables(model, 2)
        if not subgraphs:
            raise ValueError(f"{self.path}: model has no subgraph")
        sg = subgraphs[0]
        self.tensors: list[TensorInfo] = [self._tensor(k, t) for k, t in enumerate(r.tables(sg, 0))]
        self.inputs: tuple[int, ...] = tuple(int(i) for i in r.array(sg, 1, np.int32))
        self.outputs: tuple[int, ...] = tuple(int(i) for i in r.array(sg, 2, np.int32))
        self.ops: list[OpInfo] = []
        for k, op in enumerate(r.tables(sg, 3)):
            name = opcodes[r.scalar(op, 0, "I")]
            ins = tuple(int(i) for i in r.array(op, 1, np.int32))
            outs = tuple(int(i) for i in r.array(op, 2, np.int32))
            self.ops.append(OpInfo(k, name, ins, outs, self._options(name, r.table(op, 4))))

    def _tensor(self, k: int, t: int) -> TensorInfo:
        r = self._r
        type_code = r.scalar(t, 1, "b")
        if type_code not in _TENSOR_TYPES:
            raise ValueError(f"{self.path}: tensor {k} has unsupported TensorType {type_code}")
        info = TensorInfo(
            index=k,
            name=r.string(t, 3),
            shape=tuple(int(s) for s in r.array(t, 0, np.int32)),
            dtype=_TENSOR_TYPES[type_code][0],
            buffer=r.scalar(t, 2, "I"),
        )
        q = r.table(t, 4)
        if q is not None:
            info.scale = r.array(q, 2, np.float32).copy()
            info.zero_point = r.array(q, 3, np.int64).copy()
            info.quantized_dimension = r.scalar(q, 6, "i")
        return info

    def _options(self, op: str, t: int | None) -> dict[str, Any]:
        """Decode the options that change what a conv / FC computes; others are left empty."""
        if t is None:
            return {}
        r = self._r
        if op == "CONV_2D":
            return {
                "padding": PADDING[r.scalar(t, 0, "b")],
                "stride_w": r.scalar(t, 1, "i"),
                "stride_h": r.scalar(t, 2, "i"),
                "activation": ACTIVATION[r.scalar(t, 3, "b")],
                "dilation_w": r.scalar(t, 4, "i", 1),
                "dilation_h": r.scalar(t, 5, "i", 1),
            }
        if op == "DEPTHWISE_CONV_2D":
            return {
                "padding": PADDING[r.scalar(t, 0, "b")],
                "stride_w": r.scalar(t, 1, "i"),
                "stride_h": r.scalar(t, 2, "i"),
                "depth_multiplier": r.scalar(t, 3, "i"),
                "activation": ACTIVATION[r.scalar(t, 4, "b")],
                "dilation_w": r.scalar(t, 5, "i", 1),
                "dilation_h": r.scalar(t, 6, "i", 1),
            }
        if op == "FULLY_CONNECTED":
            return {"activation": ACTIVATION[r.scalar(t, 0, "b")], "keep_num_dims": bool(r.scalar(t, 2, "b"))}
        if op in ("ADD", "MUL", "SUB", "DIV"):
            return {"activation": ACTIVATION[r.scalar(t, 0, "b")]}
        if op == "MEAN":
            return {"keep_dims": bool(r.scalar(t, 0, "b"))}
        return {}

    # ---- weights -------------------------------------------------------------------------------

    def raw(self, index: int) -> np.ndarray:
        """The stored (possibly quantised) constant of tensor `index`, reshaped to its shape."""
        t = self.tensors[index]
        if t.buffer == 0 or t.buffer >= len(self._buffers):
            raise ValueError(f"{self.path}: tensor {index} ({t.name!r}) is not a constant (no buffer)")
        dtype = _NUMPY_DTYPES[t.dtype]
        if dtype is None:
            raise ValueError(f"{self.path}: tensor {index} ({t.name!r}) has dtype {t.dtype}, which holds no array")
        r, b = self._r, self._buffers[t.buffer]
        start, n = r.vector(b, 0)
        offset, size = r.scalar(b, 1, "Q"), r.scalar(b, 2, "Q")
        if n == 0 and offset > 1:  # large models keep buffers after the flatbuffer
            start, n = offset, size
        count = int(np.prod(t.shape)) if t.shape else 1
        itemsize = np.dtype(dtype).itemsize
        if n != count * itemsize:
            raise ValueError(
                f"{self.path}: tensor {index} ({t.name!r}) shape {t.shape} {t.dtype} needs "
                f"{count * itemsize} bytes, its buffer has {n}"
            )
        arr = np.frombuffer(r.buf, dtype=np.dtype(dtype).newbyteorder("<"), count=count, offset=start)
        return arr.reshape(t.shape).copy()

    def array(self, index: int) -> np.ndarray:
        """Tensor `index` as float32, dequantised `(q - zero_point) * scale` along its quantised axis."""
        t, q = self.tensors[index], self.raw(index)
        if not t.quantized or t.dtype in ("float32", "float16", "float64"):
            return q.astype(np.float32)
        scale, zp = t.scale.astype(np.float64), t.zero_point.astype(np.float64)
        if zp.size == 0:
            zp = np.zeros_like(scale)
        if scale.size > 1:  # per-channel: broadcast along quantized_dimension
            shape = [1] * q.ndim
            shape[t.quantized_dimension] = scale.size
            if q.shape[t.quantized_dimension] != scale.size:
                raise ValueError(
                    f"{self.path}: tensor {index} ({t.name!r}) has {scale.size} scales for axis "
                    f"{t.quantized_dimension} of size {q.shape[t.quantized_dimension]}"
                )
            scale, zp = scale.reshape(shape), zp.reshape(shape)
        return ((q.astype(np.float64) - zp) * scale).astype(np.float32)

    def summary(self) -> str:
        """Human-readable op list: what the converter in `yamnet.py` was written against."""
        head = f"{self.path}: {len(self.tensors)} tensors, {len(self.ops)} ops"
        lines = [f"{head}, inputs {self.inputs}, outputs {self.outputs}"]
        for op in self.ops:
            ins = ", ".join(
                f"{i}:{self.tensors[i].dtype}{list(self.tensors[i].shape)}" if i >= 0 else "-" for i in op.inputs
            )
            lines.append(f"{op.index:3d} {op.op:<18} ({ins}) -> {list(op.outputs)} {op.options or ''}")
        return "\n".join(lines)
