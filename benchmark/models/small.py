"""Small task models trained from scratch (LEVI's second view): the embedding
MLP of the recommendation tasks and the 4-layer CNN of the vision tasks."""
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


def image_to_float(x: jax.Array) -> jax.Array:
  """uint8 RGB in [0, 255] -> float32 in [-1, 1] (big_vision's ``value_range(-1,
  1)``); float images are taken as already normalised."""
  import jax.numpy as jnp
  if jnp.issubdtype(x.dtype, jnp.integer):
    return x.astype(jnp.float32) / 127.5 - 1.0
  return x.astype(jnp.float32)


class SmallCNN(nnx.Module):
  """The vision small model (paper App. D.2): four 3x3 convolutions with 32, 64,
  64 and 64 features, each followed by batch norm, ReLU and 2x2 max pooling;
  the last feature map is flattened for the adapting layers. Batch-norm running
  statistics are ``nnx.BatchStat`` state: trained with the model, stored with
  its checkpoint, used (not updated) at evaluation."""

  def __init__(self, spec: Mapping[str, Any], features: tuple[int, ...] = (32, 64, 64, 64),
               *, rngs: nnx.Rngs):
    h, w, c = (int(v) for v in spec["image"])
    self.convs = nnx.List([])
    self.norms = nnx.List([])
    for f in features:
      self.convs.append(nnx.Conv(c, f, (3, 3), padding="SAME", rngs=rngs))
      self.norms.append(nnx.BatchNorm(f, momentum=0.9, rngs=rngs))
      c = f
      h, w = h // 2, w // 2
    if h < 1 or w < 1:
      raise ValueError(f"images of {spec['image']} are too small for "
                       f"{len(features)} 2x2 poolings")
    self.out_dim = h * w * c

  def __call__(self, view, *, train: bool = False) -> jax.Array:
    x = image_to_float(view["image"])
    for conv, norm in zip(self.convs, self.norms):
      x = jax.nn.relu(norm(conv(x), use_running_average=not train))
      x = nnx.max_pool(x, (2, 2), strides=(2, 2))
    return x.reshape(x.shape[0], -1)
