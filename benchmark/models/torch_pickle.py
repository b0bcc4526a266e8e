"""Reads PyTorch ``torch.save`` files of plain tensors into numpy, without
torch: the legacy format (a sequence of pickles, then the raw storages) and
the zip format (``archive/data.pkl`` + ``archive/data/<key>``).

Only what state dicts hold is understood: tensors of the common dtypes,
``OrderedDict`` and plain containers. Anything else (arbitrary classes) is
refused rather than executed: ``find_class`` is a whitelist.
"""
from __future__ import annotations

import collections
import io
import pickle
import struct
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.errors import UserError

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_DTYPES = {"FloatStorage": np.float32, "DoubleStorage": np.float64,
           "HalfStorage": np.float16, "LongStorage": np.int64, "IntStorage": np.int32,
           "ShortStorage": np.int16, "CharStorage": np.int8, "ByteStorage": np.uint8,
           "BoolStorage": np.bool_}
_TORCH_DTYPES = {"float32": np.float32, "float": np.float32, "float64": np.float64,
                 "double": np.float64, "float16": np.float16, "half": np.float16,
                 "int64": np.int64, "long": np.int64, "int32": np.int32, "int": np.int32,
                 "int16": np.int16, "int8": np.int8, "uint8": np.uint8, "bool": np.bool_}


class _StorageType:
  def __init__(self, dtype):
    self.dtype = np.dtype(dtype)


class _Storage:
  """A storage whose bytes arrive after the pickle (legacy) or from the zip."""

  def __init__(self, key: str, dtype: np.dtype, numel: int):
    self.key, self.dtype, self.numel = key, dtype, numel
    self.array: np.ndarray | None = None


class _Tensor:
  def __init__(self, storage: _Storage, offset: int, size, stride):
    self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)

  def to_numpy(self) -> np.ndarray:
    base = self.storage.array
    if base is None:
      raise ValueError(f"storage {self.storage.key} has no data")
    item = base.dtype.itemsize
    if not self.size:
      return np.array(base[self.offset])
    end = self.offset + 1 + sum((n - 1) * s for n, s in zip(self.size, self.stride))
    if end > len(base):
      raise ValueError(f"tensor runs past its storage {self.storage.key}")
    view = np.lib.stride_tricks.as_strided(
        base[self.offset:], shape=self.size, strides=[s * item for s in self.stride],
        writeable=False)
    return np.array(view)


def _rebuild_tensor(storage, offset, size, stride, *rest):
  return _Tensor(storage, offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, hooks=None, *rest):
  return data


class _Unpickler(pickle.Unpickler):
  def __init__(self, f, storages: dict[str, _Storage]):
    super().__init__(f)
    self.storages = storages

  def find_class(self, module: str, name: str):
    if module == "collections" and name == "OrderedDict":
      return collections.OrderedDict
    if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
      return _rebuild_tensor
    if module == "torch._utils" and name == "_rebuild_parameter":
      return _rebuild_parameter
    if module == "torch" and name in _DTYPES:
      return _StorageType(_DTYPES[name])
    if module == "torch" and name in _TORCH_DTYPES:   # zip format: UntypedStorage + dtype
      return _StorageType(_TORCH_DTYPES[name])
    if module == "torch" and name == "UntypedStorage":
      return _StorageType(np.uint8)
    raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only tensors and "
                                 f"dicts of tensors are read")

  def persistent_load(self, pid):
    if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
      raise pickle.UnpicklingError(f"unknown persistent id {pid!r}")
    _, stype, key, _location, numel = pid[:5]
    key = str(key)
    if key not in self.storages:
      self.storages[key] = _Storage(key, stype.dtype, int(numel))
    return self.storages[key]


def _resolve(obj: Any) -> Any:
  if isinstance(obj, _Tensor):
    return obj.to_numpy()
  if isinstance(obj, dict):
    return type(obj)((k, _resolve(v)) for k, v in obj.items())
  if isinstance(obj, (list, tuple)):
    return type(obj)(_resolve(v) for v in obj)
  return obj


def _load_legacy(f) -> Any:
  magic = pickle.load(f)
  if magic != LEGACY_MAGIC:
    raise ValueError("not a PyTorch file (bad magic number)")
  pickle.load(f)  # protocol version
  pickle.load(f)  # system info
  storages: dict[str, _Storage] = {}
  result = _Unpickler(f, storages).load()
  keys = pickle.load(f)
  for key in keys:
    st = storages[str(key)]
    (n,) = struct.unpack("<q", f.read(8))
    raw = f.read(n * st.dtype.itemsize)
    if len(raw) != n * st.dtype.itemsize:
      raise ValueError("file ends inside a tensor's data")
    st.array = np.frombuffer(raw, dtype=st.dtype)
  return result


def _load_zip(path: str) -> Any:
  with zipfile.ZipFile(path) as z:
    names = z.namelist()
    pkl = next((n for n in names if n.endswith("/data.pkl") or n == "data.pkl"), None)
    if pkl is None:
      raise ValueError("zip without data.pkl")
    prefix = pkl[:-len("data.pkl")]
    storages: dict[str, _Storage] = {}
    result = _Unpickler(io.BytesIO(z.read(pkl)), storages).load()
    for key, st in storages.items():
      raw = z.read(f"{prefix}data/{key}")
      st.array = np.frombuffer(raw, dtype=st.dtype)
  return result


def load(path: str | Path) -> Any:
  """The object ``torch.save`` wrote to ``path``, tensors as numpy arrays.
  A truncated or foreign file is a one-line ``UserError`` naming it."""
  path = str(path)
  if not Path(path).is_file():
    raise UserError(f"{path}: PyTorch weights file not found")
  try:
    if zipfile.is_zipfile(path):
      return _resolve(_load_zip(path))
    with open(path, "rb") as f:
      return _resolve(_load_legacy(f))
  except (pickle.UnpicklingError, ValueError, EOFError, KeyError, struct.error,
          zipfile.BadZipFile, AttributeError, IndexError, TypeError) as e:
    msg = str(e).splitlines()[0] if str(e) else type(e).__name__
    raise UserError(f"{path}: not a readable PyTorch state dict ({msg}); it is truncated "
                    f"or of another kind: download or save it again") from None
