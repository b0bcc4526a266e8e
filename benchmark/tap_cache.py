"""The tap cache: frozen large models' tap lists (and light-tuned ones' frozen
bottom outputs, memory-mapped), computed once per (weights, data) and shared
by every job, seed and invocation (memory and disk). With several processes
of one run, process 0 reads and writes the disk cache and hands a stored pool
to the others; computing a pool is a step of them all."""
from __future__ import annotations

import os
import time

import numpy as np

from benchmark import locks, multihost

class FeatureCache:
  """Tap lists of frozen large models, by (cache key, pool name), in memory and,
  with ``disk_dir``, on disk (``<disk_dir>/<key>/<pool>.npz``), so that LP,
  LEVI with a pre-trained model and every seed share one computation, across
  invocations too. The key must identify the weights and the data."""

  def __init__(self, disk_dir=None):
    self._d: dict[tuple[str, str], tuple[np.ndarray, ...]] = {}
    self.disk_dir = disk_dir
    self.hits = 0
    self.misses = 0
    self.poll_s = 2.0

  def get(self, key: str, pool: str, compute) -> tuple[np.ndarray, ...]:
    k = (key, pool)
    if k in self._d:
      self.hits += 1
      return self._d[k]
    if self.disk_dir is None:
      self.misses += 1
      self._d[k] = tuple(np.asarray(t) for t in compute())
      return self._d[k]
    path = self._path(key, pool, ".npz")
    if multihost.active():
      return self._get_together(k, path, compute)
    return self._get_claimed(k, path, compute, _write_npz, _read_npz)

  def get_mapped(self, key: str, pool: str, shape: tuple[int, ...], dtype,
                 fill) -> tuple[np.ndarray, ...]:
    """``get`` for a pool led by one large array (e.g. a frozen bottom's
    per-token states): ``fill(big) -> rest`` writes the ``shape``/``dtype``
    array ``big`` in place and returns the small ones. On disk ``big`` is a
    memory-mapped ``.npy`` (``<pool>.big.npy``, filled in a temporary file and
    renamed whole, so memory holds one batch of it at a time) and is read
    back memory-mapped; ``(big, *rest)`` is returned."""
    k = (key, pool)
    if k in self._d:
      self.hits += 1
      return self._d[k]

    def in_memory():
      big = np.zeros(shape, dtype)
      return (big, *fill(big))
    if self.disk_dir is None:
      self.misses += 1
      self._d[k] = tuple(np.asarray(t) for t in in_memory())
      return self._d[k]
    path = self._path(key, pool, ".npz")
    if multihost.active():  # process 0's copy travels whole (``agree_arrays``)
      return self._get_together(k, path, in_memory)
    big_path = self._path(key, pool, ".big.npy")

    def mapped():
      from benchmark.store import new_temp
      big_path.parent.mkdir(parents=True, exist_ok=True)
      fd, tmp = new_temp(big_path, read_write=True)
      try:
        with os.fdopen(fd, "w+b") as f:
          np.lib.format.write_array_header_1_0(f, {
              "descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
              "fortran_order": False, "shape": tuple(shape)})
          f.truncate(f.tell() + int(np.prod(shape)) * np.dtype(dtype).itemsize)
          big = np.memmap(f, dtype=dtype, mode="r+", offset=f.tell(), shape=tuple(shape))
          rest = tuple(fill(big))
          big.flush()
          del big
          os.fsync(f.fileno())
        os.replace(tmp, big_path)  # before the .npz: its presence means the pool is whole
      finally:
        if tmp.exists():
          tmp.unlink()
      return (_read_big(big_path), *rest)

    def write(path, taps):
      _write_npz(path, taps[1:], first=1)

    def read(path):
      return (_read_big(big_path), *_read_npz(path, first=1))
    return self._get_claimed(k, path, mapped, write, read)

  def _path(self, key: str, pool: str, suffix: str):
    return self.disk_dir / key / f"{pool.replace('/', '__')}{suffix}"

  def _get_claimed(self, k, path, compute, write, read) -> tuple[np.ndarray, ...]:
    """``k`` from ``path``, or computed and written there by the one process
    (of those sharing the workdir) that holds its claim; the others wait for
    the file."""
    while not path.exists():
      claim = locks.try_claim(path.with_name(path.name + ".lock"))
      if claim is None:
        time.sleep(self.poll_s)
        continue
      with claim:
        if path.exists():
          break
        self.misses += 1
        taps = tuple(compute())
        write(path, taps)
        self._d[k] = taps
        return taps
    self.hits += 1
    self._d[k] = read(path)
    return self._d[k]

  def _get_together(self, k, path, compute) -> tuple[np.ndarray, ...]:
    """``get`` for several processes of one run: process 0 waits for another
    shard's computation or claims the pool; all compute it, or all get
    process 0's stored copy."""
    held: list = []

    def stored_or_claimed() -> bool:
      while not path.exists():
        claim = locks.try_claim(path.with_name(path.name + ".lock"))
        if claim is None:
          time.sleep(self.poll_s)
          continue
        if path.exists():
          claim.release()
          break
        held.append(claim)
        return False
      return True

    try:
      if multihost.agree(stored_or_claimed):
        from benchmark.store import RunStore
        arrs = multihost.agree_arrays(lambda: RunStore.read_arrays(path))  # a dict, by name
        self.hits += 1
        self._d[k] = tuple(arrs[f"tap{i}"] for i in range(len(arrs)))
        return self._d[k]
      self.misses += 1
      taps = tuple(np.asarray(t) for t in compute())
      _write_npz(path, taps)  # process 0's
      self._d[k] = taps
      return taps
    finally:
      for claim in held:
        claim.release()


def _write_npz(path, taps, first: int = 0) -> None:
  from benchmark.store import RunStore  # no cycle at import time
  RunStore.write_arrays(path, {f"tap{first + i}": t for i, t in enumerate(taps)})


def _read_npz(path, first: int = 0) -> tuple[np.ndarray, ...]:
  from benchmark.store import RunStore
  arrs = RunStore.read_arrays(path)
  return tuple(arrs[f"tap{i}"] for i in range(first, first + len(arrs)))


def _read_big(path) -> np.ndarray:
  from benchmark.errors import UserError
  try:
    return np.load(path, mmap_mode="r", allow_pickle=False)
  except (OSError, ValueError) as e:
    raise UserError(f"cache file {path} is unreadable ({str(e)[:120]}); delete it "
                    f"and the .npz beside it to recompute") from None
