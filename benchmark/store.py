"""The run store: one JSON record per component or method run.

Layout under ``WORKDIR/runs/``::

  components/<kind>/<key>.json        record (config, metrics, timings, counts)
  components/<kind>/<key>.npz         best params (trainable part) and state
  components/<kind>/<key>.preds.npz   predictions per eval split
  methods/<dataset>/<method>/<key>.json

Every write goes to a temporary file in the same folder and is renamed into
place, so a reader sees a whole file or none. Temporary files are created new
(``O_EXCL | O_NOFOLLOW``: never a file or symlink someone else placed in a
shared folder) with mode ``0666`` less the umask, so records, arrays and tables
are as readable as the user's umask (and the folder's default ACL) says.
Artefacts are written before their record: a record present means its
artefacts are present too. Each record carries a SHA-256 of its own content
(``checksum``). A record that no longer parses, or whose content no longer
matches its checksum (damaged, half-edited), is set aside as
``*.corrupt-<time>`` and reported, never used or silently overwritten;
records written before checksums are read as before. Arrays are read without
pickle (``benchmark.readers.read_npz``).
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import os
import platform
import secrets
import sys
import time
import zipfile
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from benchmark.errors import UserError


def canonical(obj: Any) -> str:
  return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=_jsonable)


def _jsonable(o):
  if isinstance(o, (np.integer,)):
    return int(o)
  if isinstance(o, (np.floating,)):
    return float(o)
  if isinstance(o, (np.ndarray,)):
    return o.tolist()
  if isinstance(o, (tuple, set, frozenset)):
    return list(o)
  raise TypeError(f"not JSON-serialisable: {type(o)}")


def key_of(obj: Any) -> str:
  return hashlib.sha256(canonical(obj).encode()).hexdigest()[:20]


CHECKSUM = "checksum"


def record_checksum(rec: Mapping) -> str:
  """SHA-256 of a record's canonical JSON, its own checksum left out."""
  return hashlib.sha256(canonical({k: v for k, v in rec.items() if k != CHECKSUM})
                        .encode()).hexdigest()


_NO_SPACE_OR_ACCESS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM,
                       errno.ENOTDIR}


def new_temp(path: Path, read_write: bool = False) -> tuple[int, Path]:
  """A new, empty temporary file beside ``path`` (``.<name>.<random>.tmp``),
  open for writing (and reading, to memory-map it): created with ``O_CREAT |
  O_EXCL | O_NOFOLLOW`` (an existing file or a symlink planted in a shared
  folder is never opened, let alone written through) and mode 0666, which
  the kernel masks with the umask."""
  flags = ((os.O_RDWR if read_write else os.O_WRONLY) | os.O_CREAT | os.O_EXCL
           | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
  for _ in range(100):
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
      return os.open(tmp, flags, 0o666), tmp
    except FileExistsError:
      continue
  raise FileExistsError(errno.EEXIST, "no free temporary name", str(path))


def atomic_write_bytes(path: Path, data: bytes) -> None:
  """Temp file in the same folder, fsync, rename: readers see all or nothing.
  On several hosts only process 0 writes."""
  from benchmark.mesh import is_main_process
  if not is_main_process():
    return
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = None
  try:
    fd, tmp = new_temp(path)
    with os.fdopen(fd, "wb") as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException as e:
    if tmp is not None:
      with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    if isinstance(e, OSError) and e.errno in _NO_SPACE_OR_ACCESS:
      raise UserError(f"cannot write {path}: {e.strerror}; free disk space or pass a "
                      f"writable --workdir, then rerun (finished runs are kept)") from e
    raise


def atomic_write_text(path: Path, text: str) -> None:
  atomic_write_bytes(path, text.encode())


def versions() -> dict[str, str]:
  out = {"python": platform.python_version()}
  for mod in ("jax", "jaxlib", "flax", "optax", "numpy"):
    m = sys.modules.get(mod)
    if m is None:
      with contextlib.suppress(ImportError):
        m = __import__(mod)
    out[mod] = getattr(m, "__version__", "?")
  return out


class RunStore:

  def __init__(self, workdir: str | os.PathLike):
    self.root = Path(workdir)
    self.runs = self.root / "runs"
    self.set_aside: list[Path] = []

  # -- paths -------------------------------------------------------------
  def component_path(self, kind: str, key: str) -> Path:
    return self.runs / "components" / kind / f"{key}.json"

  def method_path(self, dataset: str, method: str, key: str) -> Path:
    return self.runs / "methods" / dataset / method / f"{key}.json"

  # -- records -----------------------------------------------------------
  def read(self, path: Path) -> dict | None:
    """The record at ``path``, or None. An unparsable record is moved aside
    (``.corrupt-<time>``) and reported on stderr, then treated as absent."""
    try:
      data = path.read_bytes()
    except FileNotFoundError:
      return None
    try:
      rec = json.loads(data.decode("utf-8"))
      if not isinstance(rec, dict):
        raise ValueError("not a JSON object")
    except (ValueError, RecursionError) as e:  # UnicodeDecodeError, JSONDecodeError
      self.put_aside(path, f"is not valid JSON ({str(e)[:120]})")
      return None
    if CHECKSUM in rec:
      try:
        ok = rec[CHECKSUM] == record_checksum(rec)
      except (ValueError, TypeError, RecursionError):   # nested past what json writes
        ok = False
      if not ok:
        self.put_aside(path, "does not match its checksum (damaged or edited)")
        return None
    return rec

  def put_aside(self, path: Path, why: str, artefacts: tuple[str, ...] = ()) -> None:
    """Moves a damaged record (and its artefacts, by suffix) to
    ``*.corrupt-<time>`` and reports it: kept for inspection, recomputed."""
    stamp = f"{time.strftime('%Y%m%dT%H%M%S')}-{time.time_ns() % 10**9:09d}"
    for p in [path.with_name(path.stem + suf) for suf in artefacts] + [path]:
      if p.exists():
        aside = p.with_name(f"{p.name}.corrupt-{stamp}")
        os.replace(p, aside)
        self.set_aside.append(aside)
    print(f"warning: store record {path} {why}; moved aside (*.corrupt-{stamp}) and "
          f"will be recomputed", file=sys.stderr)

  @staticmethod
  def unreadable_arrays(path: Path) -> str | None:
    """Why the npz at ``path`` cannot be read (missing, cut short, not a zip), or
    None. Cheap: opens the zip's central directory, which a cut file lacks."""
    try:
      with zipfile.ZipFile(path) as z:
        z.namelist()
      return None
    except FileNotFoundError:
      return "is missing"
    except (OSError, zipfile.BadZipFile) as e:
      return f"is unreadable ({e})"

  def write(self, path: Path, record: Mapping) -> None:
    rec = {k: v for k, v in record.items() if k != CHECKSUM}
    rec.setdefault("written_at", time.strftime("%Y-%m-%dT%H:%M:%S"))
    rec.setdefault("versions", versions())
    # The checksum is of the record as it will be read back (tuples as lists,
    # numpy scalars as numbers, keys as strings).
    rec = json.loads(json.dumps(rec, default=_jsonable))
    rec[CHECKSUM] = record_checksum(rec)
    atomic_write_text(path, json.dumps(rec, indent=1, sort_keys=True) + "\n")

  # -- arrays ------------------------------------------------------------
  @staticmethod
  def write_arrays(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(v) for k, v in arrays.items()})
    atomic_write_bytes(path, buf.getvalue())

  @staticmethod
  def read_arrays(path: Path) -> dict[str, np.ndarray]:
    from benchmark.readers import Unreadable, read_npz
    try:
      return read_npz(path)
    except Unreadable as e:
      raise UserError(f"store file {path} is unreadable ({e}); delete it and its "
                      f".json record to recompute") from None

  def sweep_temporaries(self, older_than_s: float = 3600.0) -> int:
    """Removes temporary files of writes that a killed process left behind
    (``.<name>.<random>.tmp``); younger ones may be another live writer's."""
    n, now = 0, time.time()
    for top in (self.runs, self.root / "cache"):
      if not top.is_dir():
        continue
      for p in top.rglob(".*.tmp"):
        with contextlib.suppress(FileNotFoundError):
          if now - p.stat().st_mtime > older_than_s:
            p.unlink()
            n += 1
    return n

  def check_writable(self) -> None:
    """Process 0's workdir (the only process that writes) takes a test write."""
    from benchmark.mesh import is_main_process
    if not is_main_process():
      return
    try:
      self.runs.mkdir(parents=True, exist_ok=True)
      atomic_write_text(self.runs / ".write-test", "ok")
      os.unlink(self.runs / ".write-test")
      self.sweep_temporaries()
    except OSError as e:
      raise UserError(f"workdir {self.root} is not writable ({e.strerror}); "
                      f"pass a writable --workdir") from e
