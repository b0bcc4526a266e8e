"""Heads and adapting layers."""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx


class Adapter(nnx.Module):
  """LEVI's adapting layer: an MLP with one hidden layer (App. D.2)."""

  def __init__(self, din: int, hidden: int, dout: int, *, rngs: nnx.Rngs):
    self.hidden = nnx.Linear(din, hidden, rngs=rngs)
    self.out = nnx.Linear(hidden, dout, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    return self.out(jax.nn.relu(self.hidden(x)))


def linear_head(din: int, dout: int, *, rngs: nnx.Rngs) -> nnx.Linear:
  # Zero-initialised like big_vision's classification heads: a fresh head
  # starts from the prior, so FT/LP start from the same function.
  return nnx.Linear(din, dout, kernel_init=nnx.initializers.zeros_init(),
                    rngs=rngs)


def concat(*xs: jax.Array | None) -> jax.Array:
  return jnp.concatenate([x for x in xs if x is not None], axis=-1)
