"""Device mesh with one ``data`` axis: the same code on 1 or N devices, and on
several processes once ``jax.distributed`` is initialised (see
``maybe_initialize_distributed`` and ``benchmark.multihost``)."""
from __future__ import annotations

import os

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

_MESH: Mesh | None = None


def maybe_initialize_distributed(timeout_s: float | None = None) -> bool:
  """Several processes: set JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and
  JAX_PROCESS_ID, or start them with a launcher jax detects (``srun`` with
  several tasks, ``mpirun``, a TPU slice; ``multihost.launcher_wants_processes``).
  ``timeout_s``: how soon the others stop when one dies."""
  from benchmark import multihost
  return multihost.initialize(multihost.DEFAULT_TIMEOUT_S if timeout_s is None else timeout_s)


def enable_compilation_cache(path: str | None = None) -> None:
  """Keeps compiled programs on disk (JAX's own ``$JAX_COMPILATION_CACHE_DIR``
  when set, else ``$LEVI_CACHE/jax``, default ``~/.cache/levi_harness/jax``):
  a rerun, or another seed in a new process, skips XLA compilation, which
  dominates short CPU runs of the text models. Programs that compiled in
  under half a second are not kept, unless JAX's own
  ``$JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS`` says otherwise (the test
  suite sets 0: its many processes share even the small programs)."""
  if path is None:
    path = os.environ.get("JAX_COMPILATION_CACHE_DIR")
  if not path:
    base = os.environ.get("LEVI_CACHE", os.path.join(os.path.expanduser("~"), ".cache",
                                                     "levi_harness"))
    path = os.path.join(base, "jax")
  jax.config.update("jax_compilation_cache_dir", path)
  if "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS" not in os.environ:
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


def get_mesh() -> Mesh:
  global _MESH
  if _MESH is None:
    _MESH = Mesh(np.array(jax.devices()), ("data",))
  return _MESH


def num_data_shards() -> int:
  return get_mesh().shape["data"]


def replicated() -> NamedSharding:
  return NamedSharding(get_mesh(), P())


def batch_sharding(leading_axes: int = 0) -> NamedSharding:
  """Shard the batch axis, which follows ``leading_axes`` unsharded axes
  (e.g. 1 for a chunk of steps stacked as ``[steps, batch, ...]``)."""
  return NamedSharding(get_mesh(), P(*([None] * leading_axes), "data"))


def put(tree, sharding: NamedSharding, batch_axis: int | None = None):
  """Host arrays -> global device arrays.

  Every process holds the same global batch (the same seeded permutation), so
  on several hosts each one hands over its own contiguous slice of
  ``batch_axis``; replicated values (``batch_axis=None``) go as they are.
  """
  n_proc = jax.process_count()
  if n_proc == 1:
    return jax.device_put(tree, sharding)

  def local(x):
    x = np.asarray(x)
    if batch_axis is not None:
      size = x.shape[batch_axis] // n_proc
      start = jax.process_index() * size
      x = np.take(x, np.arange(start, start + size), axis=batch_axis)
    return jax.make_array_from_process_local_data(sharding, x)
  return jax.tree.map(local, tree)


def fetch(x) -> np.ndarray:
  """A (possibly batch-sharded, multi-host) device array as one host array."""
  if jax.process_count() > 1 and not x.is_fully_addressable:
    from jax.experimental import multihost_utils
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))
  return np.asarray(x)


def is_main_process() -> bool:
  """Only process 0 writes to the store and prints tables."""
  return jax.process_index() == 0
