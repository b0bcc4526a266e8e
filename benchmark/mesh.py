"""Device mesh with one ``data`` axis: the same code on 1 or N devices, and on
several hosts once ``jax.distributed.initialize()`` has run (see
``maybe_initialize_distributed``)."""
from __future__ import annotations

import os

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

_MESH: Mesh | None = None


def maybe_initialize_distributed() -> None:
  """Multi-host: set JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and
  JAX_PROCESS_ID (or run under a launcher jax auto-detects, e.g. SLURM)."""
  if os.environ.get("JAX_COORDINATOR_ADDRESS") or os.environ.get("SLURM_JOB_ID"):
    jax.distributed.initialize()


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


def put(tree, sharding: NamedSharding):
  """Host arrays -> global device arrays. On several hosts each process passes
  its own slice of the batch."""
  if jax.process_count() == 1:
    return jax.device_put(tree, sharding)
  return jax.tree.map(
      lambda x: jax.make_array_from_process_local_data(sharding, x), tree)
