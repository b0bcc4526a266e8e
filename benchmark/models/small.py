"""Small task models trained from scratch (LEVI's second view)."""
from __future__ import annotations

from typing import Any, Mapping

import jax
from flax import nnx

from benchmark.models.features import FeatureEmbed


class EmbeddingMLP(nnx.Module):
  """Input embeddings followed by a two-layer MLP (paper App. D.2: 512 and 256
  units for the recommendation tasks). Returns its last hidden layer."""

  def __init__(self, spec: Mapping[str, Any], hidden: tuple[int, ...],
               embed_dim: int, *, rngs: nnx.Rngs):
    self.embed = FeatureEmbed(spec, embed_dim, rngs=rngs)
    dims = (self.embed.out_dim, *hidden)
    self.layers = nnx.List([nnx.Linear(dims[i], dims[i + 1], rngs=rngs)
                            for i in range(len(hidden))])
    self.out_dim = hidden[-1]

  def __call__(self, view, *, train: bool = False) -> jax.Array:
    del train
    h = self.embed(view)
    for layer in self.layers:
      h = jax.nn.relu(layer(h))
    return h
