"""Reads PyTorch ``torch.save`` files of plain tensors into numpy, without
torch and without running anything the file names: the legacy format (a
sequence of pickles, then the raw storages) and the zip format
(``archive/data.pkl`` + ``archive/data/<key>``).

Every pickle in either format goes through one allow-listed unpickler
(``StateDictUnpickler``): it admits only what a state dict needs (tensor and
parameter rebuild functions, storage types, ``OrderedDict``, and the plain
containers and scalars pickle builds without a global) and refuses any other
global before it is looked up, so a crafted file fails in one line naming the
global, and nothing in it is executed.
"""
from __future__ import annotations

import collections
import io
import pickle
import struct
import zipfile
import zlib
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
# Tensors with more dimensions than this are not weights: a crafted size.
_MAX_NDIM = 16


class Refused(pickle.UnpicklingError):
  """The file asks for a global a state dict never holds."""

  def __init__(self, name: str):
    super().__init__(name)
    self.name = name


class _Frozen(tuple):
  """A tuple without a ``__dict__``: pickle's BUILD opcode (``__setstate__``
  or attribute assignment) cannot change what the unpickler hands out."""
  __slots__ = ()


class _StorageType(_Frozen):
  """A storage type the file names (``torch.FloatStorage``): (dtype name,)."""
  __slots__ = ()

  @property
  def dtype(self) -> np.dtype:
    return np.dtype(self[0])


class _StorageRef(_Frozen):
  """A persistent id resolved: (key,). The storage itself (dtype, element
  count, bytes) stays with the loader, out of the pickle's reach."""
  __slots__ = ()


class _Tensor(_Frozen):
  """(storage ref, offset, size, stride), checked when built."""
  __slots__ = ()


class _Rebuild(_Frozen):
  """torch's ``_rebuild_tensor(_v2)`` / ``_rebuild_parameter``: (which,)."""
  __slots__ = ()

  def __call__(self, *args):
    if self[0] == "parameter":   # (data, requires_grad, hooks, ...): the tensor
      if not args or not isinstance(args[0], _Tensor):
        raise ValueError("a parameter without a tensor")
      return args[0]
    if len(args) < 4:
      raise ValueError("a tensor rebuilt from fewer than 4 values")
    storage, offset, size, stride = args[:4]
    if not isinstance(storage, _StorageRef):
      raise ValueError("a tensor without a storage")
    if type(offset) is not int or offset < 0:
      raise ValueError(f"tensor offset {str(offset)[:40]} is not a non-negative int")
    size, stride = _ints(size, "size"), _ints(stride, "stride")
    if len(size) != len(stride):
      raise ValueError(f"tensor size {size} and stride {stride} differ in length")
    return _Tensor((storage, offset, size, stride))


def _ints(x, what: str) -> tuple[int, ...]:
  if not isinstance(x, tuple) or len(x) > _MAX_NDIM or not all(
      type(v) is int and v >= 0 for v in x):
    raise ValueError(f"tensor {what} {str(x)[:60]} is not a tuple of non-negative ints")
  return tuple(x)


class _Storage:
  """A storage whose bytes arrive after the pickle (legacy) or from the zip."""

  def __init__(self, key: str, dtype: np.dtype, numel: int):
    self.key, self.dtype, self.numel = key, dtype, numel
    self.array: np.ndarray | None = None


def _to_numpy(t: _Tensor, storages: dict[str, _Storage]) -> np.ndarray:
  ref, offset, size, stride = t
  st = storages[ref[0]]
  base = st.array
  if base is None:
    raise ValueError(f"storage {st.key} has no data")
  if 0 in size:
    return np.zeros(size, base.dtype)
  # The last element read: every index must lie inside the storage before
  # numpy is given strides (as_strided does not check).
  end = offset + sum((n - 1) * s for n, s in zip(size, stride))
  if end >= len(base):
    raise ValueError(f"tensor runs past its storage {st.key}")
  # Overlapping or zero strides may repeat elements, but weights do not blow
  # a storage up a thousandfold: a crafted size would fill memory.
  if int(np.prod(size, dtype=object)) > 1024 * len(base):
    raise ValueError(f"tensor of size {size} from a storage of {len(base)} elements")
  if not size:
    return np.array(base[offset])
  item = base.dtype.itemsize
  view = np.lib.stride_tricks.as_strided(
      base[offset:], shape=size, strides=[s * item for s in stride], writeable=False)
  return np.array(view)


def _allowed(module: str, name: str):
  """What a state dict's pickle may name, or None."""
  if module == "collections" and name == "OrderedDict":
    return collections.OrderedDict
  if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
    return _Rebuild(("tensor",))
  if module == "torch._utils" and name == "_rebuild_parameter":
    return _Rebuild(("parameter",))
  if module == "torch" and name in _DTYPES:
    return _StorageType((np.dtype(_DTYPES[name]).name,))
  if module == "torch" and name in _TORCH_DTYPES:   # zip format: UntypedStorage + dtype
    return _StorageType((np.dtype(_TORCH_DTYPES[name]).name,))
  if module == "torch" and name == "UntypedStorage":
    return _StorageType(("uint8",))
  return None


class StateDictUnpickler(pickle.Unpickler):
  """The one unpickler of the harness. Globals come only from ``_allowed``
  (``find_class`` is where pickle looks up every global: GLOBAL, STACK_GLOBAL,
  INST, OBJ and the copyreg extension codes alike), so anything else is
  refused before it is imported or called. With ``storages`` None (the legacy
  format's header pickles) persistent ids are refused too."""

  def __init__(self, f, storages: dict[str, _Storage] | None = None):
    super().__init__(f)
    self.storages = storages

  def find_class(self, module: str, name: str):
    got = _allowed(str(module), str(name))
    if got is None:
      raise Refused(f"{module}.{name}")
    return got

  def persistent_load(self, pid):
    if self.storages is None:
      raise pickle.UnpicklingError("a persistent id outside the tensor data")
    if not (type(pid) is tuple and len(pid) >= 5 and pid[0] == "storage"):
      raise pickle.UnpicklingError(f"unknown persistent id {str(pid)[:80]}")
    _, stype, key, _location, numel = pid[:5]
    if len(pid) > 5 and pid[5] is not None:
      raise pickle.UnpicklingError("storage views (files of torch < 0.4) are not read")
    if not isinstance(stype, _StorageType) or type(numel) is not int or numel < 0 or (
        type(key) not in (str, int)):
      raise pickle.UnpicklingError(f"malformed storage id {str(pid)[:80]}")
    key = str(key)
    st = self.storages.setdefault(key, _Storage(key, stype.dtype, numel))
    if (st.dtype, st.numel) != (stype.dtype, numel):
      raise pickle.UnpicklingError(f"storage {key} named twice with different types")
    return _StorageRef((key,))


def _unpickle(f, storages: dict[str, _Storage] | None = None) -> Any:
  return StateDictUnpickler(f, storages).load()


_PLAIN = (int, float, complex, str, bytes, bytearray, bool, type(None))


def _resolve(obj: Any, storages: dict[str, _Storage], depth: int = 0) -> Any:
  """``obj`` with its tensors as numpy arrays; anything but plain containers,
  scalars and tensors (a bare storage type, say) is an error."""
  if depth > 100:
    raise ValueError("containers nested more than 100 deep")
  if isinstance(obj, _Tensor):
    return _to_numpy(obj, storages)
  if isinstance(obj, _Frozen):
    raise ValueError(f"a {type(obj).__name__.strip('_')} where a tensor or value belongs")
  if isinstance(obj, dict):
    return type(obj)((k, _resolve(v, storages, depth + 1)) for k, v in obj.items())
  if type(obj) in (list, tuple, set, frozenset):
    return type(obj)(_resolve(v, storages, depth + 1) for v in obj)
  if type(obj) in _PLAIN:
    return obj
  raise ValueError(f"a {type(obj).__name__} where a tensor or value belongs")


def _load_legacy(f) -> Any:
  magic = _unpickle(f)
  if magic != LEGACY_MAGIC:
    raise ValueError("not a PyTorch file (bad magic number)")
  _unpickle(f)  # protocol version
  info = _unpickle(f)
  if isinstance(info, dict) and info.get("little_endian") is False:
    raise ValueError("saved on a big-endian machine")
  storages: dict[str, _Storage] = {}
  result = _unpickle(f, storages)
  keys = _unpickle(f)
  if type(keys) is not list:
    raise ValueError("no list of storage keys after the data")
  for key in keys:
    st = storages[str(key)]
    (n,) = struct.unpack("<q", f.read(8))
    if n != st.numel:
      raise ValueError(f"storage {st.key} holds {n} elements, its tensors say {st.numel}")
    raw = f.read(n * st.dtype.itemsize)
    if len(raw) != n * st.dtype.itemsize:
      raise ValueError("file ends inside a tensor's data")
    st.array = np.frombuffer(raw, dtype=st.dtype)
  return _resolve(result, storages)


def _load_zip(path: str) -> Any:
  with zipfile.ZipFile(path) as z:
    names = z.namelist()
    pkl = next((n for n in names if n.endswith("/data.pkl") or n == "data.pkl"), None)
    if pkl is None:
      raise ValueError("zip without data.pkl")
    prefix = pkl[:-len("data.pkl")]
    storages: dict[str, _Storage] = {}
    result = _unpickle(io.BytesIO(z.read(pkl)), storages)
    for key, st in storages.items():
      info = z.getinfo(f"{prefix}data/{key}")
      need = st.numel * st.dtype.itemsize
      # Checked before reading: a crafted entry cannot make us inflate more.
      if info.file_size != need:
        raise ValueError(f"storage {key} holds {info.file_size} bytes, its tensors say {need}")
      st.array = np.frombuffer(z.read(info), dtype=st.dtype)
  return _resolve(result, storages)


# What a foreign, truncated or crafted file raises inside the readers above
# (zipfile and the C unpickler among them); anything else is a bug here.
_UNREADABLE = (pickle.UnpicklingError, ValueError, EOFError, KeyError, struct.error,
               zipfile.BadZipFile, zlib.error, AttributeError, IndexError, TypeError,
               OverflowError, MemoryError, RecursionError, NotImplementedError,
               RuntimeError, OSError)


def load(path: str | Path) -> Any:
  """The object ``torch.save`` wrote to ``path``, tensors as numpy arrays.
  A truncated or foreign file is a one-line ``UserError`` naming it; so is a
  crafted one, naming the global it asked for (which is never run)."""
  path = str(path)
  if not Path(path).is_file():
    raise UserError(f"{path}: PyTorch weights file not found")
  try:
    if zipfile.is_zipfile(path):
      return _load_zip(path)
    with open(path, "rb") as f:
      return _load_legacy(f)
  except Refused as e:
    raise UserError(f"{path}: refusing to load {e.name}: a state dict holds only tensors "
                    f"and containers of them, this file asks pickle to import or call "
                    f"something else (it may be malicious); pass a plain torch.save("
                    f"model.state_dict()) file") from None
  except _UNREADABLE as e:
    msg = (str(e).splitlines() or [type(e).__name__])[0][:200]
    raise UserError(f"{path}: not a readable PyTorch state dict ({msg}); it is truncated "
                    f"or of another kind: download or save it again") from None
