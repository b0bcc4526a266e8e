"""The fast transformer pieces compute what the plain forms compute."""
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from benchmark.models import ops
from benchmark.models.lora import LoRALinear


def test_gelu_is_the_exact_gelu():
  x = jnp.linspace(-12.0, 12.0, 4001, dtype=jnp.float32)
  np.testing.assert_allclose(np.asarray(ops.gelu(x)),
                             np.asarray(jax.nn.gelu(x, approximate=False)), atol=6e-7)
  g = jax.grad(lambda v: ops.gelu(v).sum())(x)
  want = jax.grad(lambda v: jax.nn.gelu(v, approximate=False).sum())(x)
  np.testing.assert_allclose(np.asarray(g), np.asarray(want), atol=2e-6)


def _layers(n_out=(5, 5, 7), dtype=None):
  rngs = nnx.Rngs(0)
  return [nnx.Linear(6, n, rngs=rngs, dtype=dtype) for n in n_out]


def test_project_is_the_layers_one_by_one():
  x = jax.random.normal(jax.random.key(1), (2, 3, 6))
  layers = _layers()
  got = ops.project(x, layers)
  assert [g.shape for g in got] == [(2, 3, 5), (2, 3, 5), (2, 3, 7)]
  for g, m in zip(got, layers):
    np.testing.assert_allclose(np.asarray(g), np.asarray(m(x)), rtol=1e-6, atol=1e-6)
  # bfloat16 inputs as the layers' own dtype says
  bf = _layers(dtype=jnp.bfloat16)
  for g, m in zip(ops.project(x, bf), bf):
    assert g.dtype == m(x).dtype == jnp.bfloat16


def test_project_calls_lora_layers_themselves():
  x = jax.random.normal(jax.random.key(1), (4, 6))
  layers = _layers()
  layers[1] = LoRALinear(layers[1], rank=2, alpha=4.0, rngs=nnx.Rngs(1))
  layers[1].lora_b[...] = jnp.ones((2, 5))  # a nonzero update must show
  got = ops.project(x, layers)
  np.testing.assert_allclose(np.asarray(got[1]), np.asarray(layers[1](x)), rtol=1e-6)
  assert not np.allclose(np.asarray(got[1]), np.asarray(x @ layers[1].kernel[...] + layers[1].bias[...]))


def test_attention_masks_padded_keys():
  b, t, n, d = 2, 5, 2, 3
  q, k, v = (jax.random.normal(jax.random.key(i), (b, t, n * d)) for i in range(3))
  mask = jnp.asarray([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
  out = ops.attention(q, k, v, n, mask)
  # reference: per head, softmax over the kept keys only
  for i in range(b):
    keep = np.asarray(mask[i]).astype(bool)
    for h in range(n):
      sl = slice(h * d, (h + 1) * d)
      s = np.asarray(q[i, :, sl]) @ np.asarray(k[i, keep, sl]).T / np.sqrt(d)
      p = np.exp(s - s.max(-1, keepdims=True))
      p /= p.sum(-1, keepdims=True)
      np.testing.assert_allclose(np.asarray(out[i, :, sl]), p @ np.asarray(v[i, keep, sl]),
                                 rtol=1e-5, atol=1e-6)
