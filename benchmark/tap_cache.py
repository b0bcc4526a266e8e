"""The tap cache: frozen large models' tap lists, computed once per (weights,
data) and shared by every job, seed and invocation (memory and disk). With
several processes of one run, process 0 reads and writes the disk cache and
hands a stored pool to the others; computing a pool is a step of them all."""
from __future__ import annotations

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
    from benchmark.store import RunStore  # no cycle at import time
    path = self.disk_dir / key / f"{pool.replace('/', '__')}.npz"
    if multihost.active():
      return self._get_together(k, path, compute)
    while not path.exists():
      # Processes sharing the workdir compute each pool once: one holds the
      # claim, the others wait for its file.
      claim = locks.try_claim(path.with_name(path.name + ".lock"))
      if claim is None:
        time.sleep(self.poll_s)
        continue
      with claim:
        if path.exists():
          break
        self.misses += 1
        taps = tuple(np.asarray(t) for t in compute())
        RunStore.write_arrays(path, {f"tap{i}": t for i, t in enumerate(taps)})
        self._d[k] = taps
        return taps
    arrs = RunStore.read_arrays(path)
    self.hits += 1
    self._d[k] = tuple(arrs[f"tap{i}"] for i in range(len(arrs)))
    return self._d[k]

  def _get_together(self, k, path, compute) -> tuple[np.ndarray, ...]:
    """``get`` for several processes of one run: process 0 waits for another
    shard's computation or claims the pool; all compute it, or all get
    process 0's stored copy."""
    from benchmark.store import RunStore
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
        arrs = multihost.agree_arrays(lambda: RunStore.read_arrays(path))
        self.hits += 1
        self._d[k] = tuple(arrs[f"tap{i}"] for i in range(len(arrs)))
        return self._d[k]
      self.misses += 1
      taps = tuple(np.asarray(t) for t in compute())
      RunStore.write_arrays(path, {f"tap{i}": t for i, t in enumerate(taps)})  # process 0's
      self._d[k] = taps
      return taps
    finally:
      for claim in held:
        claim.release()
