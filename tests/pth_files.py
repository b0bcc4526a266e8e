"""Writes PyTorch ``.pth`` files without torch, for tests: state dicts of
numpy arrays in the legacy format (five pickles, then the raw storages) and
in the zip format, opcode for opcode as ``torch.save`` writes them; and
crafted ones whose pickles would run code (a marker file written) if a
reader executed them."""
from __future__ import annotations

import os
import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
SYS_INFO = {"protocol_version": 1001, "little_endian": True,
            "type_sizes": {"short": 2, "int": 4, "long": 4}}
STORAGE = {"float32": "FloatStorage", "float64": "DoubleStorage", "float16": "HalfStorage",
           "int64": "LongStorage", "int32": "IntStorage", "int16": "ShortStorage",
           "int8": "CharStorage", "uint8": "ByteStorage", "bool": "BoolStorage"}


def _global(module: str, name: str) -> bytes:
  return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def _str(s: str) -> bytes:
  b = s.encode()
  return b"X" + struct.pack("<I", len(b)) + b


def _int(i: int) -> bytes:
  return b"J" + struct.pack("<i", i)


def _tuple(items: list[bytes]) -> bytes:
  return b"(" + b"".join(items) + b"t"


def data_pickle(tensors: dict[str, np.ndarray], legacy: bool,
                views: dict[str, tuple] | None = None) -> bytes:
  """The state dict's pickle: an OrderedDict of ``_rebuild_tensor_v2`` calls
  on storages named by persistent ids (keys "0", "1", ...); ``views`` gives
  a tensor another (offset, size, stride) into its storage."""
  out = [b"\x80\x02", _global("collections", "OrderedDict"), b")R("]
  for i, (name, a) in enumerate(tensors.items()):
    a = np.array(a, order="C")
    pid = [_str("storage"), _global("torch", STORAGE[a.dtype.name]), _str(str(i)),
           _str("cpu"), _int(a.size)] + ([b"N"] if legacy else [])
    offset, size, stride = (views or {}).get(
        name, (0, a.shape, [int(s // a.itemsize) for s in a.strides]))
    out += [_str(name), _global("torch._utils", "_rebuild_tensor_v2"), b"(",
            _tuple(pid), b"Q", _int(offset), _tuple([_int(n) for n in size]),
            _tuple([_int(s) for s in stride]), b"\x89",
            _global("collections", "OrderedDict"), b")R", b"tR"]
  out.append(b"u.")
  return b"".join(out)


def legacy_bytes(tensors: dict[str, np.ndarray], pickles: dict[int, bytes] | None = None
                 ) -> bytes:
  """A legacy-format file; ``pickles`` replaces the i-th of its five pickles
  (magic, protocol, system info, data, storage keys)."""
  parts = [pickle.dumps(LEGACY_MAGIC, 2), pickle.dumps(1001, 2), pickle.dumps(SYS_INFO, 2),
           data_pickle(tensors, legacy=True),
           pickle.dumps([str(i) for i in range(len(tensors))], 2)]
  for i, p in (pickles or {}).items():
    parts[i] = p
  for a in tensors.values():
    a = np.array(a, order="C")
    parts.append(struct.pack("<q", a.size) + a.astype(a.dtype.newbyteorder("<")).tobytes())
  return b"".join(parts)


def zip_bytes(tensors: dict[str, np.ndarray], data_pkl: bytes | None = None) -> bytes:
  """A zip-format file (``archive/data.pkl`` and ``archive/data/<key>``)."""
  import io
  buf = io.BytesIO()
  with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
    z.writestr("archive/data.pkl", data_pkl if data_pkl is not None
               else data_pickle(tensors, legacy=False))
    z.writestr("archive/byteorder", "little")
    for i, a in enumerate(tensors.values()):
      z.writestr(f"archive/data/{i}", np.array(a, order="C").tobytes())
    z.writestr("archive/version", "3\n")
  return buf.getvalue()


def sample_tensors() -> dict[str, np.ndarray]:
  return {"w": np.arange(6, dtype=np.float32).reshape(2, 3),
          "b": np.array([1, -2], np.int64), "s": np.array(True)}


# -- crafted files ------------------------------------------------------------------

class _System:
  """Pickles as ``posix.system(cmd)`` (GLOBAL, or STACK_GLOBAL in protocol 4)."""

  def __init__(self, cmd: str):
    self.cmd = cmd

  def __reduce__(self):
    return os.system, (self.cmd,)


def payloads(marker: Path) -> dict[str, bytes]:
  """Pickles that would write ``marker`` if run, one per way pickle imports
  a global (GLOBAL, STACK_GLOBAL, INST, OBJ) and one hidden inside an
  otherwise valid state dict."""
  touch = f"touch {marker}"
  code = f"open({str(marker)!r}, 'w').write('ran')"
  hidden = (b"\x80\x02" + _global("collections", "OrderedDict") + b")R("
            + _str("ok") + _int(1) + _str("evil") + _global("builtins", "exec")
            + _tuple([_str(code)]) + b"R" + b"u.")
  return {
      "global_os_system": pickle.dumps(_System(touch), 2),
      "stack_global_exec": pickle.dumps(_Exec(code), 4),
      "inst_os_system": b"(" + _str(touch) + b"ios\nsystem\n.",
      "obj_eval": b"(" + _global("builtins", "eval") + _str(code) + b"o.",
      "hidden_in_state_dict": hidden,
  }


class _Exec:
  """Pickles as ``builtins.exec(code)``."""

  def __init__(self, code: str):
    self.code = code

  def __reduce__(self):
    return exec, (self.code,)


def write(path: Path, data: bytes) -> Path:
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_bytes(data)
  return path
