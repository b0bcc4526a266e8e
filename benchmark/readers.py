"""Streaming readers for the raw data formats the benchmarks ship in, with
one-line errors that name the file, the line and the fix (``DataError``).

- tab-separated text with a header row (``.tsv``, optionally gzipped: the
  Amazon Customer Reviews files);
- JSON lines (one object per line, optionally gzipped: Amazon Review Data 2018);
- IDX arrays (optionally gzipped: MNIST / Fashion-MNIST);
- ``.npz`` archives of arrays (``read_npz``: the run store, tap caches, ViT
  checkpoints), read without pickle and sized from their headers before any
  array is allocated.

Gzip is recognised by its magic bytes, not the file name. A truncated or
corrupt gzip stream, a missing column, a row with the wrong number of fields,
a line that is not JSON, and an IDX file shorter than its header says are
errors; ``on_bad="skip"`` instead skips bad rows and counts them
(``Counter.skipped``), for sources known to hold a few broken lines.
"""
from __future__ import annotations

import contextlib
import gzip
import io
import json
import lzma
import struct
import zipfile
import zlib
from pathlib import Path
from typing import IO, Iterator, Sequence

import numpy as np

from benchmark.errors import DataError

GZIP_MAGIC = b"\x1f\x8b"
_GZIP_ERRORS = (EOFError, zlib.error, gzip.BadGzipFile)


class Counter:
  """Rows read and bad rows skipped by one reader."""

  def __init__(self):
    self.rows = 0
    self.skipped = 0
    self.first_bad: str | None = None
    self.line = 0       # the line number of the row last yielded


def is_gzip(path: Path) -> bool:
  with open(path, "rb") as f:
    return f.read(2) == GZIP_MAGIC


@contextlib.contextmanager
def open_binary(path: str | Path) -> Iterator[IO[bytes]]:
  p = Path(path)
  if not p.is_file():
    raise DataError(f"{p}: file not found")
  f = gzip.open(p, "rb") if is_gzip(p) else open(p, "rb")
  try:
    yield f
  except _GZIP_ERRORS as e:
    raise DataError(f"{p}: truncated or corrupt gzip ({type(e).__name__}: {e}); "
                    f"download the file again") from None
  finally:
    f.close()


def _lines(path: Path) -> Iterator[tuple[int, str]]:
  with open_binary(path) as f:
    text = io.TextIOWrapper(f, encoding="utf-8", errors="replace", newline="")
    for no, line in enumerate(text, start=1):
      yield no, line.rstrip("\r\n")


def _bad(counter: Counter, on_bad: str, msg: str) -> None:
  if on_bad == "error":
    raise DataError(msg)
  counter.skipped += 1
  if counter.first_bad is None:
    counter.first_bad = msg


def iter_tsv(path: str | Path, required: Sequence[str], on_bad: str = "error",
             counter: Counter | None = None, fix: str = "") -> Iterator[dict[str, str]]:
  """Rows of a tab-separated file with a header, as ``{column: text}`` for
  the ``required`` columns. ``fix`` is appended to the missing-column error
  (e.g. which format was expected)."""
  p, c = Path(path), counter or Counter()
  lines = _lines(p)
  first = next(lines, None)
  if first is None:
    raise DataError(f"{p}: empty file; expected a tab-separated header row")
  header = first[1].split("\t")
  missing = [col for col in required if col not in header]
  if missing:
    raise DataError(f"{p}: missing column(s) {', '.join(missing)} in the header "
                    f"(found {', '.join(header[:8])}{', ...' if len(header) > 8 else ''})"
                    + (f"; {fix}" if fix else ""))
  idx = [header.index(col) for col in required]
  for no, line in lines:
    if not line:
      continue
    fields = line.split("\t")
    if len(fields) != len(header):
      _bad(c, on_bad, f"{p} line {no}: {len(fields)} tab-separated fields, the header "
                      f"has {len(header)}")
      continue
    c.rows += 1
    c.line = no
    yield {col: fields[i] for col, i in zip(required, idx)}


def iter_jsonl(path: str | Path, required: Sequence[str], on_bad: str = "error",
               counter: Counter | None = None) -> Iterator[dict]:
  """Objects of a JSON-lines file that hold every ``required`` key."""
  p, c = Path(path), counter or Counter()
  for no, line in _lines(p):
    if not line.strip():
      continue
    try:
      obj = json.loads(line)
    except ValueError as e:
      _bad(c, on_bad, f"{p} line {no}: not a JSON object ({e.msg})")
      continue
    if not isinstance(obj, dict):
      _bad(c, on_bad, f"{p} line {no}: not a JSON object")
      continue
    missing = [k for k in required if k not in obj]
    if missing:
      _bad(c, on_bad, f"{p} line {no}: missing key(s) {', '.join(missing)}")
      continue
    c.rows += 1
    c.line = no
    yield obj


_IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4",
              0x0E: ">f8"}


def read_idx(path: str | Path) -> np.ndarray:
  """An IDX file (the MNIST format: 2 zero bytes, a type byte, the number of
  dimensions, big-endian uint32 sizes, then the data)."""
  p = Path(path)
  with open_binary(p) as f:
    data = f.read()
  if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_TYPES:
    raise DataError(f"{p}: not an IDX file (bad magic number); expected MNIST-format "
                    f"files such as train-images-idx3-ubyte(.gz)")
  dtype = np.dtype(_IDX_TYPES[data[2]])
  ndim = data[3]
  head = 4 + 4 * ndim
  if len(data) < head:
    raise DataError(f"{p}: truncated IDX header; download the file again")
  shape = tuple(int(x) for x in np.frombuffer(data[4:head], ">u4"))
  need = int(np.prod(shape)) * dtype.itemsize
  if len(data) - head != need:
    raise DataError(f"{p}: IDX data has {len(data) - head} bytes, its header {shape} "
                    f"needs {need}; the file is truncated or corrupt, download it again")
  return np.frombuffer(data[head:], dtype).reshape(shape).astype(dtype.newbyteorder("="))


# -- .npz -----------------------------------------------------------------------------

class Unreadable(ValueError):
  """Why an ``.npz`` cannot be read, in a few words; callers add the file and
  the fix."""


_NPZ_ERRORS = (zipfile.BadZipFile, zlib.error, lzma.LZMAError, EOFError, ValueError, OSError,
               struct.error, NotImplementedError, RuntimeError, KeyError, TypeError,
               OverflowError, MemoryError)
_NPY_HEADERS = {(1, 0): np.lib.format.read_array_header_1_0,
                (2, 0): np.lib.format.read_array_header_2_0}


def read_npz(path: str | Path) -> dict[str, np.ndarray]:
  """The arrays of an ``.npz`` (``np.savez``, compressed or not), never
  unpickled: each member's ``.npy`` header is parsed (object dtypes refused)
  and the data size it implies checked against the zip's record of the
  member before an array is allocated, so a cut, foreign or crafted file is
  an ``Unreadable`` (one line), never a huge allocation or a pickle."""
  try:
    with zipfile.ZipFile(path) as z:
      names = z.namelist()
      if len(set(names)) != len(names):
        raise Unreadable("the archive names a member twice")
      return {(n[:-4] if n.endswith(".npy") else n): _npy_member(z, z.getinfo(n))
              for n in names}
  except Unreadable:
    raise
  except FileNotFoundError:
    raise Unreadable("not found") from None
  except _NPZ_ERRORS as e:
    msg = (str(e).splitlines() or [""])[0][:160]
    raise Unreadable(f"{type(e).__name__}: {msg}" if msg else type(e).__name__) from None


def _npy_member(z: zipfile.ZipFile, info: zipfile.ZipInfo) -> np.ndarray:
  if not info.filename.endswith(".npy"):
    raise Unreadable(f"member {info.filename} is not an array")
  with z.open(info) as f:
    version = np.lib.format.read_magic(f)
    if version not in _NPY_HEADERS:
      raise Unreadable(f"member {info.filename}: .npy format {version} is not read")
    shape, fortran, dtype = _NPY_HEADERS[version](f)
    if dtype.hasobject:
      raise Unreadable(f"member {info.filename} holds Python objects (a pickle)")
    count = 1
    for n in shape:
      count *= int(n)
    need, have = count * dtype.itemsize, info.file_size - f.tell()
    if need != have:
      raise Unreadable(f"member {info.filename}: {have} bytes of data, its header "
                       f"({dtype}, shape {shape}) needs {need}")
    if need == 0:
      return np.zeros(shape, dtype, order="F" if fortran else "C")
    buf = bytearray(need)
    view, done = memoryview(buf), 0
    while done < need:
      n = f.readinto(view[done:done + (16 << 20)])
      if not n:
        raise Unreadable(f"member {info.filename} ends early")
      done += n
  flat = np.frombuffer(buf, dtype, count)
  return flat.reshape(shape[::-1]).T if fortran else flat.reshape(shape)
