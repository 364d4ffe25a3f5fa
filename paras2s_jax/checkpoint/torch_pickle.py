"""Read and write PyTorch `torch.save` zip files without torch and without running pickle code.

`torch.save` files are a zip archive holding `data.pkl` (a pickle whose tensors point at
storages by a persistent id) and one raw little-endian blob per storage (`data/<key>`).
Unpickling such a file with the stock `pickle` module would call any global the file
names (`os.system` included). `read_torch_file` uses an unpickler that resolves only the
globals a tensor checkpoint needs (the same family as `torch.load(weights_only=True)`:
tensor and parameter rebuilds, storage types, `OrderedDict`, `torch.Size`, dtypes) and
refuses everything else with an error naming the file and the global. Tensors come back as
`TorchTensor` handles: nothing is read from the archive until `.numpy()` is called, so a
19 GB training checkpoint (weights + optimizer state) costs only the tensors you load.

`save_torch_file` writes the same layout (numpy arrays in, `torch.load`-compatible file out);
it is used to build random checkpoints in the real layout.
"""

from __future__ import annotations

import collections
import io
import pickle
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np

# torch storage class name -> numpy dtype of its elements
_STORAGE_DTYPES: dict[str, np.dtype] = {
    "FloatStorage": np.dtype(np.float32),
    "DoubleStorage": np.dtype(np.float64),
    "HalfStorage": np.dtype(np.float16),
    "BFloat16Storage": np.dtype(ml_dtypes.bfloat16),
    "LongStorage": np.dtype(np.int64),
    "IntStorage": np.dtype(np.int32),
    "ShortStorage": np.dtype(np.int16),
    "CharStorage": np.dtype(np.int8),
    "ByteStorage": np.dtype(np.uint8),
    "BoolStorage": np.dtype(np.bool_),
}
_DTYPE_STORAGES = {v: k for k, v in _STORAGE_DTYPES.items()}


class TorchFileError(ValueError):
    """A `torch.save` file that cannot be read safely (unknown global, bad layout)."""


@dataclass(frozen=True)
class _StorageType:
    name: str

    @property
    def dtype(self) -> np.dtype:
        return _STORAGE_DTYPES[self.name]


@dataclass
class _Storage:
    archive: _Archive
    key: str
    dtype: np.dtype
    numel: int


@dataclass
class TorchTensor:
    """A tensor in a `torch.save` file; `.numpy()` reads it (a copy, C-contiguous)."""

    storage: _Storage
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]

    @property
    def dtype(self) -> np.dtype:
        return self.storage.dtype

    def numpy(self) -> np.ndarray:
        flat = self.storage.archive.storage_array(self.storage)
        if not self.shape:
            return flat[self.offset].copy()
        item = flat.itemsize
        view = np.lib.stride_tricks.as_strided(
            flat[self.offset:], shape=self.shape, strides=[s * item for s in self.stride]
        )
        return np.ascontiguousarray(view)


class _Archive:
    """The zip archive and the storages already read from it."""

    def __init__(self, path: Path):
        self.path = path
        try:
            self.zip = zipfile.ZipFile(path)
        except zipfile.BadZipFile as e:
            raise TorchFileError(
                f"{path}: not a torch.save zip archive (legacy torch<1.6 files are not "
                "supported; re-save it with a recent torch)"
            ) from e
        pkl = [n for n in self.zip.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pkl) != 1:
            raise TorchFileError(f"{path}: no <name>/data.pkl record in the archive")
        self.prefix = pkl[0][: -len("data.pkl")]
        order = self.zip.read(f"{self.prefix}byteorder") if f"{self.prefix}byteorder" in \
            self.zip.namelist() else b"little"
        if order != b"little" or sys.byteorder != "little":
            raise TorchFileError(f"{path}: only little-endian files on little-endian hosts")
        self._cache: dict[str, np.ndarray] = {}

    def storage_array(self, storage: _Storage) -> np.ndarray:
        if storage.key not in self._cache:
            name = f"{self.prefix}data/{storage.key}"
            try:
                raw = self.zip.read(name)
            except KeyError as e:
                raise TorchFileError(f"{self.path}: storage record {name} missing") from e
            arr = np.frombuffer(raw, dtype=storage.dtype)
            if arr.size < storage.numel:
                raise TorchFileError(
                    f"{self.path}: storage {name} holds {arr.size} elements, "
                    f"{storage.numel} expected (truncated file?)"
                )
            self._cache[storage.key] = arr
        return self._cache[storage.key]


def _rebuild_tensor(storage, offset, shape, stride, *_ignored) -> TorchTensor:
    return TorchTensor(storage, int(offset), tuple(shape), tuple(stride))


def _rebuild_parameter(data, *_ignored):
    return data


def _encode(text: str, encoding: str = "latin1") -> bytes:  # how pickle protocol 2 stores bytes
    return text.encode(encoding)


_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch", "Size"): tuple,
    ("torch", "device"): str,
    ("builtins", "set"): set,
    ("_codecs", "encode"): _encode,
    **{("torch", name): _StorageType(name) for name in _STORAGE_DTYPES},
}


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, data: bytes, archive: _Archive):
        super().__init__(io.BytesIO(data))
        self.archive = archive

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED_GLOBALS:
            return _ALLOWED_GLOBALS[(module, name)]
        if module == "torch" and name in {"float32", "float16", "bfloat16", "float64", "int64",
                                          "int32", "int16", "int8", "uint8", "bool"}:
            return f"torch.{name}"
        raise TorchFileError(
            f"{self.archive.path}: refusing to load global {module}.{name} (only tensor "
            "data is read from torch files; no pickle code is executed)"
        )

    def persistent_load(self, pid: Any) -> _Storage:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"
                and isinstance(pid[1], _StorageType)):
            raise TorchFileError(f"{self.archive.path}: unsupported persistent id {pid!r}")
        _, storage_type, key, _location, numel = pid
        return _Storage(self.archive, str(key), storage_type.dtype, int(numel))


def read_torch_file(path: str | Path) -> Any:
    """Unpickle a `torch.save` file safely; tensors come back as lazy `TorchTensor`s."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    archive = _Archive(path)
    data = archive.zip.read(f"{archive.prefix}data.pkl")
    try:
        return _RestrictedUnpickler(data, archive).load()
    except TorchFileError:
        raise
    except Exception as e:  # malformed pickle stream
        raise TorchFileError(f"{path}: cannot read data.pkl: {e}") from e


# --- writing -------------------------------------------------------------------------------

class _Global:
    """Pickled as the global `module.name` (the writer never imports it)."""

    def __init__(self, module: str, name: str):
        self.module, self.name = module, name

    def __call__(self, *args):  # pickle's save_reduce insists on a callable
        raise TypeError(f"{self.module}.{self.name} is a placeholder for writing only")


_REBUILD = _Global("torch._utils", "_rebuild_tensor_v2")
_ORDERED_DICT = _Global("collections", "OrderedDict")


class _WriteStorage:
    def __init__(self, key: str, array: np.ndarray):
        self.key, self.array = key, array


class _Writer(pickle._Pickler):  # the pure-Python pickler lets us emit foreign globals
    def __init__(self, file, storages: list[_WriteStorage]):
        super().__init__(file, protocol=2)
        self.storages = storages

    def persistent_id(self, obj: Any):
        if isinstance(obj, _WriteStorage):
            storage = _Global("torch", _DTYPE_STORAGES[obj.array.dtype])
            return ("storage", storage, obj.key, "cpu", obj.array.size)
        return None

    def save(self, obj: Any, save_persistent_id: bool = True) -> None:
        if isinstance(obj, _Global):
            self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode())
            return
        if isinstance(obj, np.ndarray):
            if obj.dtype not in _DTYPE_STORAGES:
                raise TypeError(f"no torch storage type for numpy dtype {obj.dtype}")
            storage = _WriteStorage(str(len(self.storages)), np.ascontiguousarray(obj))
            self.storages.append(storage)
            stride = tuple(s // obj.itemsize for s in storage.array.strides)
            self.save_reduce(_REBUILD, (storage, 0, obj.shape, stride, False, _Hooks()))
            return
        if isinstance(obj, _Hooks):
            self.save_reduce(_ORDERED_DICT, ())
            return
        super().save(obj, save_persistent_id)


class _Hooks:
    """An empty `OrderedDict()` of backward hooks, as torch writes it."""


def save_torch_file(path: str | Path, obj: Any) -> None:
    """Write nested dicts/lists of numpy arrays (any torch dtype, bfloat16 included) in the
    `torch.save` zip layout, readable by `torch.load(weights_only=True)`."""
    path = Path(path)
    buf = io.BytesIO()
    storages: list[_WriteStorage] = []
    _Writer(buf, storages).dump(obj)
    prefix = path.stem or "archive"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as z:
        z.writestr(f"{prefix}/data.pkl", buf.getvalue())
        z.writestr(f"{prefix}/byteorder", "little")
        for s in storages:
            z.writestr(f"{prefix}/data/{s.key}", s.array.tobytes())
        z.writestr(f"{prefix}/version", "3\n")
