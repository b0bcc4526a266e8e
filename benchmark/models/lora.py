"""LoRA (Hu et al., ICLR 2022) on a large model's attention projections.

``add_lora(model, targets, rank, alpha, rngs)`` swaps every ``nnx.Linear``
whose path matches ``targets`` for a ``LoRALinear``: the same ``kernel`` and
``bias`` (so pre-trained checkpoints load by the same names) plus a rank-``r``
update ``x @ lora_a @ lora_b * alpha / r`` whose ``lora_b`` starts at zero, so
the adapted model starts as the pre-trained one. Freezing rules then train
``lora_a``/``lora_b`` alone (``LORA_RULE``).
"""
from __future__ import annotations

import math
import re

import jax
import jax.numpy as jnp
from flax import nnx

from benchmark.errors import UserError
from benchmark.models import params as P

LORA_RULE = r"/lora_[ab]$"   # the LoRA factors' parameter paths


class LoRALinear(nnx.Linear):
  """``nnx.Linear`` plus a low-rank update of its kernel."""

  def __init__(self, base: nnx.Linear, rank: int, alpha: float, *, rngs: nnx.Rngs):
    super().__init__(base.in_features, base.out_features, use_bias=base.use_bias,
                     dtype=base.dtype, param_dtype=base.param_dtype,
                     precision=base.precision, rngs=rngs)
    self.kernel = base.kernel  # the pre-trained weights, by the same names
    if base.use_bias:
      self.bias = base.bias
    # A: Kaiming-uniform as in the LoRA reference code; B: zeros.
    bound = 1.0 / math.sqrt(base.in_features)
    self.lora_a = nnx.Param(jax.random.uniform(
        rngs.params(), (base.in_features, rank), base.param_dtype, -bound, bound))
    self.lora_b = nnx.Param(jnp.zeros((rank, base.out_features), base.param_dtype))
    self.lora_scale = float(alpha) / rank

  def __call__(self, x: jax.Array) -> jax.Array:
    y = super().__call__(x)
    dt = y.dtype
    a, b = self.lora_a[...].astype(dt), self.lora_b[...].astype(dt)
    return y + (x.astype(dt) @ a @ b) * jnp.asarray(self.lora_scale, dt)


def add_lora(model: nnx.Module, targets: str, rank: int, alpha: float,
             rngs: nnx.Rngs, *, what: str = "model") -> int:
  """Replaces ``model``'s linear layers whose path matches the regex
  ``targets`` by ``LoRALinear``s, in place; returns how many."""
  if rank < 1:
    raise UserError(f"LoRA rank {rank}: use a positive rank, e.g. --config.lora.rank=8")
  rx = re.compile(targets)
  hits = [(path, m) for path, m in nnx.iter_modules(model)
          if type(m) is nnx.Linear and rx.search(P.path_str(path))]
  if not hits:
    raise UserError(f"LoRA: no linear layer of the {what} matches {targets!r}; "
                    f"this backbone's attention projections are named otherwise")
  for path, m in hits:
    parent = model
    for k in path[:-1]:
      parent = parent[k] if isinstance(k, int) else getattr(parent, k)
    new = LoRALinear(m, rank, alpha, rngs=rngs)
    if isinstance(path[-1], int):
      parent[path[-1]] = new
    else:
      setattr(parent, path[-1], new)
  return len(hits)
