"""Input embedding for tabular / categorical views: ids -> embeddings,
concatenated with numeric columns. Id 0 is the out-of-vocabulary bucket."""
from __future__ import annotations

from typing import Any, Mapping

import jax
import jax.numpy as jnp
from flax import nnx


class FeatureEmbed(nnx.Module):

  def __init__(self, spec: Mapping[str, Any], embed_dim: int, *, rngs: nnx.Rngs):
    self.num_dim = int(spec.get("num", 0))
    vocab = tuple(int(v) for v in spec.get("cat_vocab", ()))
    self.embeds = nnx.List([nnx.Embed(v, embed_dim, rngs=rngs) for v in vocab])
    self.out_dim = self.num_dim + embed_dim * len(vocab)
    if self.out_dim == 0:
      raise ValueError("a view with neither numeric nor categorical columns")

  def __call__(self, view: Mapping[str, jax.Array]) -> jax.Array:
    parts = []
    if self.num_dim:
      parts.append(view["num"].astype(jnp.float32))
    for i, emb in enumerate(self.embeds):
      parts.append(emb(view["cat"][:, i]))
    return jnp.concatenate(parts, axis=-1)
