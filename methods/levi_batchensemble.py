"""LEVI with BatchEnsemble adapting layers (the efficiency extension the LEVI
paper proposes in App. F; Wen et al., ICLR 2020, "BatchEnsemble").

Not a row of the LEVI paper. LEVI's adapting layers are MLPs with one hidden
layer, one per tapped block. Here every adapting layer shares one weight
matrix per layer of that MLP, modulated by its own rank-one factors:
``W_i = W * (r_i s_i^T)``, applied as ``((x * r_i) @ W) * s_i + b_i``, with
its own bias. Taps of different widths are zero-padded to the widest one.
Adapting layers then cost ``d_in + d_hidden`` (and ``d_hidden + d_out``)
parameters each instead of ``d_in * d_hidden`` (and ``d_hidden * d_out``);
Table 3 counts both. Everything else is LEVI's: the large model light-tuned
(top half of its blocks), the small model, the loss and prediction as the
mean over adapting layers.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from benchmark.builtin_kinds import TRAIN_ALL, ensemble_config, ensemble_large
from benchmark.kinds import LIGHT, ComponentKind, register_kind
from benchmark.models.heads import concat
from benchmark.models.task import LayerwiseEnsemble, large_taps
from methods.base import SingleComponent, register


def _signs(rngs: nnx.Rngs, shape) -> jax.Array:
  # BatchEnsemble's random-sign initialisation of the fast weights: the
  # members start different, with the shared weight's scale.
  return jnp.where(jax.random.bernoulli(rngs.params(), 0.5, shape), 1.0, -1.0)


class RankOneLayer(nnx.Module):
  """``members`` linear layers sharing ``kernel``, each with its rank-one
  factors ``r`` (inputs) and ``s`` (outputs) and its own bias."""

  def __init__(self, din: int, dout: int, members: int, *, rngs: nnx.Rngs):
    self.shared = nnx.Linear(din, dout, use_bias=False, rngs=rngs)
    self.r = nnx.Param(_signs(rngs, (members, din)))
    self.s = nnx.Param(_signs(rngs, (members, dout)))
    self.bias = nnx.Param(jnp.zeros((members, dout)))

  def __call__(self, i: int, x: jax.Array) -> jax.Array:
    return self.shared(x * self.r[i]) * self.s[i] + self.bias[i]


class BatchEnsembleAdapters(nnx.Module):
  """LEVI's adapting layers (one hidden layer each) as a BatchEnsemble."""

  def __init__(self, dins, hidden: int, dout: int, *, rngs: nnx.Rngs):
    self.dins = tuple(int(d) for d in dins)
    self.width = max(self.dins)
    self.hidden = RankOneLayer(self.width, hidden, len(self.dins), rngs=rngs)
    self.out = RankOneLayer(hidden, dout, len(self.dins), rngs=rngs)

  def __call__(self, i: int, x: jax.Array) -> jax.Array:
    x = jnp.pad(x, ((0, 0), (0, self.width - x.shape[-1])))
    return self.out(i, jax.nn.relu(self.hidden(i, x)))


class BatchEnsembleLevi(LayerwiseEnsemble):
  """``LayerwiseEnsemble`` whose adapting layers are one BatchEnsemble."""

  def __init__(self, large, small, taps, adapter_hidden: int, out_dim: int, *,
               rngs: nnx.Rngs):
    self.large, self.small, self.taps = large, small, tuple(taps)
    small_dim = small.out_dim if small is not None else 0
    dins = [large.tap_dims[t] + small_dim for t in self.taps]
    self.adapters = BatchEnsembleAdapters(dins, adapter_hidden, out_dim, rngs=rngs)

  def __call__(self, batch, *, train: bool = False) -> jax.Array:
    z = self.small(batch["small"], train=train) if self.small is not None else None
    feats = large_taps(self, batch, train)
    return jnp.stack([self.adapters(i, concat(f, z)) for i, f in enumerate(feats)])


def _network(nets, config, rngs):
  large, rules = ensemble_large(nets, config, rngs)
  model = BatchEnsembleLevi(large, nets.build_small(rngs), config["taps"],
                            config["adapter_hidden"], nets.out_dim, rngs=rngs)
  return model, rules + TRAIN_ALL


register_kind(ComponentKind(
    "levi_batchensemble", "LEVI (large model light-tuned) with BatchEnsemble adapting layers",
    lambda specs, seed, **_: {**ensemble_config(specs, "levi_batchensemble", LIGHT),
                              "adapters": "batchensemble"},
    _network, lr_key="levi", default_lr=1e-3, large=LIGHT, small=True))


@register
class LeviBatchEnsemble(SingleComponent):
  """LEVI whose adapting layers share weights modulated by rank-one factors."""
  name, kind, family = "levi_batchensemble", "levi_batchensemble", "beyond"
  label = "LEVI, BatchEnsemble adapters (App. F)"
  extra_row = True


def adapter_params(model) -> int:
  """Parameters of a model's adapting layers (for comparing with LEVI's)."""
  state = nnx.state(model.adapters, nnx.Param)
  return int(sum(np.prod(v.shape) for v in jax.tree.leaves(state)))
