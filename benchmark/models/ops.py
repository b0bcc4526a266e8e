"""Transformer pieces shared by the BERT and ViT encoders, written the way
XLA's CPU backend runs fastest, with the same numbers as the plain forms
(``tests/test_parity_minilm.py``, ``tests/test_parity_vit.py``).

On the ``ft`` step of ``minilm_l6`` (batch 64, 64 tokens, float32, 2 CPU
cores) the two together save at most a few percent of the training step,
inside the machine's noise (``python -m benchmark.perf --only ft_step`` times
both forms side by side: ``fast_forms_speedup``); the GELU alone runs 7x
faster, a layer's forward 1.5x (``docs/performance.md``).
"""
from __future__ import annotations

import contextlib
import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

_SQRT_HALF = np.float32(1 / math.sqrt(2))
_PLAIN = [False]


@contextlib.contextmanager
def plain_forms():
  """Functions traced inside run the plain forms instead (``jax.nn.gelu``'s
  erfc, one matmul per projection): ``benchmark.perf`` times both side by
  side to show what the fast forms save."""
  _PLAIN[0] = True
  try:
    yield
  finally:
    _PLAIN[0] = False


def gelu(x: jax.Array) -> jax.Array:
  """Exact GELU as torch and Hugging Face compute it, ``x/2 (1 + erf(x/sqrt 2))``.
  ``jax.nn.gelu(approximate=False)`` goes through ``erfc``, which XLA's CPU
  backend evaluates about 7x slower (8.9 ms against 1.2 ms on a
  ``[4096, 1536]`` float32 array); the two differ by under 5e-7."""
  if _PLAIN[0]:
    return jax.nn.gelu(x, approximate=False)
  return 0.5 * x * (1.0 + jax.lax.erf(x * _SQRT_HALF.astype(x.dtype)))


def _fusable(layers) -> bool:
  first = layers[0]
  same = ("in_features", "use_bias", "dtype", "precision", "preferred_element_type")
  return all(type(m) is nnx.Linear and all(getattr(m, a) == getattr(first, a) for a in same)
             for m in layers)


def project(x: jax.Array, layers) -> list[jax.Array]:
  """``[m(x) for m in layers]`` for linear layers reading the same input, as
  one matmul over their concatenated kernels (one large GEMM runs faster on
  CPU than three small ones, and its backward needs no sum of three input
  gradients). Layers that are not plain ``nnx.Linear`` (LoRA-wrapped ones) or
  differ in dtype are called one by one."""
  if _PLAIN[0] or not _fusable(layers):
    return [m(x) for m in layers]
  first = layers[0]
  kernel = jnp.concatenate([m.kernel[...] for m in layers], axis=-1)
  bias = jnp.concatenate([m.bias[...] for m in layers]) if first.use_bias else None
  x, kernel, bias = first.promote_dtype((x, kernel, bias), dtype=first.dtype)
  kw = ({} if first.preferred_element_type is None
        else {"preferred_element_type": first.preferred_element_type})
  y = first.dot_general(x, kernel, (((x.ndim - 1,), (0,)), ((), ())),
                        precision=first.precision, **kw)
  if bias is not None:
    y = y + bias
  return jnp.split(y, np.cumsum([m.out_features for m in layers])[:-1], axis=-1)


def attention(q: jax.Array, k: jax.Array, v: jax.Array, num_heads: int,
              mask: jax.Array | None = None) -> jax.Array:
  """Scaled dot-product attention: ``[B, T, H]`` queries, keys, values split
  into ``num_heads`` heads; ``mask`` (``[B, T]``, nonzero on tokens) hides
  padded keys. Softmax in float32. Returns ``[B, T, H]`` in ``v``'s dtype."""
  b, t, h = q.shape
  d = h // num_heads
  # Heads first ([B, N, T, D]): the batched matmuls then read contiguous rows.
  heads = lambda y: jnp.transpose(y.reshape(b, t, num_heads, d), (0, 2, 1, 3))
  q, k, v = heads(q), heads(k), heads(v)
  scores = jnp.einsum("bnqd,bnkd->bnqk", q, k).astype(jnp.float32) / math.sqrt(d)
  if mask is not None:
    hide = jnp.where(mask.astype(bool), 0.0, jnp.finfo(jnp.float32).min)
    scores = scores + hide[:, None, None, :]
  probs = jax.nn.softmax(scores, axis=-1).astype(v.dtype)
  ctx = jnp.einsum("bnqk,bnkd->bnqd", probs, v)
  return jnp.transpose(ctx, (0, 2, 1, 3)).reshape(b, t, h)
