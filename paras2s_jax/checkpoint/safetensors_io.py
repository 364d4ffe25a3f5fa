"""Streaming safetensors I/O with bfloat16 support on plain NumPy.

The `safetensors` package's NumPy API cannot represent bfloat16, and its other APIs
materialise tensors on a framework device. Checkpoint conversion needs neither: it
wants a zero-copy, memory-mapped view of one tensor at a time (so the whole model is
never in host memory twice) and a writer that appends tensors one by one. The format
is small: an 8-byte little-endian header size, a JSON header, then raw tensor bytes.
Files written here are read back by the `safetensors` package in the tests.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Iterable, Mapping
from pathlib import Path

import ml_dtypes
import numpy as np

_DTYPES = {
    "BF16": np.dtype(ml_dtypes.bfloat16),
    "F16": np.dtype(np.float16),
    "F32": np.dtype(np.float32),
    "F64": np.dtype(np.float64),
    "I64": np.dtype(np.int64),
    "I32": np.dtype(np.int32),
    "I16": np.dtype(np.int16),
    "I8": np.dtype(np.int8),
    "U8": np.dtype(np.uint8),
    "BOOL": np.dtype(np.bool_),
}
_NAMES = {v: k for k, v in _DTYPES.items()}
_MAX_HEADER = 100 * 1024 * 1024


class SafetensorsError(OSError):
    """A safetensors file is malformed or truncated; the message names the file."""


class SafetensorsFile:
    """A safetensors file opened for lazy, memory-mapped reads of single tensors."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            size = self.path.stat().st_size
            with open(self.path, "rb") as f:
                head = f.read(8)
                if len(head) < 8:
                    raise SafetensorsError(f"{self.path}: file too short ({size} bytes)")
                (n,) = struct.unpack("<Q", head)
                if n > _MAX_HEADER or 8 + n > size:
                    raise SafetensorsError(
                        f"{self.path}: header length {n} does not fit the file ({size} bytes)"
                    )
                header = json.loads(f.read(n))
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as err:
            if isinstance(err, SafetensorsError):
                raise
            raise SafetensorsError(f"{self.path}: unreadable safetensors header ({err})") from err
        self.metadata: dict[str, str] = header.pop("__metadata__", None) or {}
        self._entries: dict[str, tuple[np.dtype, tuple[int, ...], int, int]] = {}
        data_start = 8 + n
        for name, info in header.items():
            try:
                dtype = _DTYPES[info["dtype"]]
                shape = tuple(int(d) for d in info["shape"])
                begin, end = (int(x) for x in info["data_offsets"])
            except (KeyError, TypeError, ValueError) as err:
                raise SafetensorsError(
                    f"{self.path}: bad header entry for {name!r} ({err})"
                ) from err
            if end - begin != math.prod(shape) * dtype.itemsize:
                raise SafetensorsError(f"{self.path}: {name}: byte range does not match its shape")
            if data_start + end > size:
                raise SafetensorsError(
                    f"{self.path}: truncated: {name} needs bytes up to {data_start + end}, "
                    f"the file has {size}"
                )
            self._entries[name] = (dtype, shape, data_start + begin, data_start + end)

    def keys(self) -> list[str]:
        return list(self._entries)

    def shape(self, name: str) -> tuple[int, ...]:
        return self._entries[name][1]

    def dtype(self, name: str) -> np.dtype:
        return self._entries[name][0]

    def get(self, name: str) -> np.ndarray:
        """A read-only memory-mapped view of one tensor (pages load on access)."""
        if name not in self._entries:
            raise SafetensorsError(f"{self.path}: no tensor named {name!r}")
        dtype, shape, begin, _ = self._entries[name]
        if math.prod(shape) == 0:
            return np.zeros(shape, dtype)
        return np.memmap(self.path, dtype=dtype, mode="r", offset=begin, shape=shape)


def write_safetensors(
    path: str | Path,
    tensors: Iterable[tuple[str, np.ndarray]] | Mapping[str, np.ndarray],
    shapes: Mapping[str, tuple[tuple[int, ...], np.dtype]] | None = None,
    metadata: Mapping[str, str] | None = None,
) -> int:
    """Write tensors to `path`; returns the number of data bytes.

    With `shapes` (name -> (shape, dtype)) given up front, `tensors` may be a generator:
    each tensor is written as it arrives and then dropped.
    """
    if isinstance(tensors, Mapping):
        items: Iterable[tuple[str, np.ndarray]] = tensors.items()
        shapes = shapes or {k: (tuple(v.shape), np.dtype(v.dtype)) for k, v in tensors.items()}
    else:
        items = tensors
        if shapes is None:
            items = list(items)
            shapes = {k: (tuple(v.shape), np.dtype(v.dtype)) for k, v in items}
    header: dict[str, object] = {}
    if metadata:
        header["__metadata__"] = dict(metadata)
    offset = 0
    for name, (shape, dtype) in shapes.items():
        nbytes = math.prod(shape) * np.dtype(dtype).itemsize
        header[name] = {
            "dtype": _NAMES[np.dtype(dtype)], "shape": list(shape),
            "data_offsets": [offset, offset + nbytes],
        }
        offset += nbytes
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)  # keep tensor data 8-byte aligned
    written = 0
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        order = list(shapes)
        for i, (name, array) in enumerate(items):
            if i >= len(order) or name != order[i]:
                raise ValueError(f"{path}: tensor {name!r} arrived out of the declared order")
            shape, dtype = shapes[name]
            array = np.ascontiguousarray(array, dtype=dtype)
            if tuple(array.shape) != tuple(shape):
                raise ValueError(f"{path}: {name} has shape {array.shape}, declared {shape}")
            f.write(array.reshape(-1).view(np.uint8))
            written += array.nbytes
    if written != offset:
        raise ValueError(f"{path}: wrote {written} bytes of tensor data, declared {offset}")
    return written
