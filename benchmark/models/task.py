"""The two shapes of task model every method is built from.

Both return head outputs stacked as ``[heads, batch, out_dim]``: single-head
models have one head; LEVI has one per adapting layer. Loss and prediction are
then the same code for every method (``benchmark.trainer``).

Both read the large model's taps from ``batch["large_taps"]`` when present:
when the large model is frozen, the trainer computes its full tap list once per
split (and caches it on disk) and feeds it back, so frozen parts are never
recomputed nor given gradients. When only its bottom blocks are frozen
(light-tuning), ``batch["large_bottom"]`` holds their taps and
``batch["large"]`` what they hand on, and the model runs its top blocks.
``select_taps`` picks what each model uses.
"""
from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from benchmark.models.heads import Adapter, concat, linear_head


def large_taps(model, batch, train) -> tuple[jax.Array, ...]:
  """The large model's taps that ``model`` uses (``select_taps``), however
  the trainer feeds them: the view, the frozen model's cached taps, or a
  frozen bottom's cached outputs. A task model of a method module reads its
  large model through this (and sets ``reads_cached_bottom``)."""
  if "large_taps" in batch:
    taps = tuple(batch["large_taps"])
  elif "large_bottom" in batch:  # the frozen bottom's taps; ``large``: what it hands on
    bottom = tuple(batch["large_bottom"])
    taps = bottom + tuple(model.large.top(batch["large"], len(bottom), train=train))
  else:
    taps = tuple(model.large(batch["large"], train=train))
  return model.select_taps(taps)


class LargeWithHead(nnx.Module):
  """A large model with a linear head on its pooled last layer: the FT, HT,
  LP, FS and LP->FT rows."""
  reads_cached_bottom = True  # its large model is read through ``large_taps``

  def __init__(self, large: nnx.Module, out_dim: int, *, rngs: nnx.Rngs):
    self.large = large
    self.head = linear_head(large.feature_dim, out_dim, rngs=rngs)

  def select_taps(self, taps) -> tuple[jax.Array, ...]:
    return (taps[-1],)

  def __call__(self, batch, *, train: bool = False) -> jax.Array:
    (feat,) = large_taps(self, batch, train)
    return self.head(feat)[None]


class LayerwiseEnsemble(nnx.Module):
  """LEVI (paper Sec. 4, Fig. 3) and the ablations A3-A5.

  One adapting layer per tapped large-model layer, fed concat(tap j, small
  model output). Without a large model (A4/A5) ``num_heads`` adapters all read
  the small model; without a small model (A3) adapters read the taps alone.
  """
  reads_cached_bottom = True  # its large model is read through ``large_taps``

  def __init__(self, large: nnx.Module | None, small: nnx.Module | None,
               taps: Sequence[int] | None, num_heads: int, adapter_hidden: int,
               out_dim: int, *, rngs: nnx.Rngs):
    if large is None and small is None:
      raise ValueError("LayerwiseEnsemble needs a large or a small model")
    self.large = large
    self.small = small
    self.taps = tuple(taps or ())
    small_dim = small.out_dim if small is not None else 0
    if large is not None:
      dins = [large.tap_dims[t] + small_dim for t in self.taps]
    else:
      dins = [small_dim] * num_heads
    self.adapters = nnx.List([Adapter(d, adapter_hidden, out_dim, rngs=rngs)
                              for d in dins])

  def select_taps(self, taps) -> tuple[jax.Array, ...]:
    return tuple(taps[t] for t in self.taps)

  def __call__(self, batch, *, train: bool = False) -> jax.Array:
    z = self.small(batch["small"], train=train) if self.small is not None else None
    if self.large is not None:
      feats = large_taps(self, batch, train)
      outs = [a(concat(f, z)) for a, f in zip(self.adapters, feats)]
    else:
      outs = [a(z) for a in self.adapters]
    return jnp.stack(outs)
