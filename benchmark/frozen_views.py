"""The large model's frozen part, computed once: a job's host arrays with the
large model's view replaced by the cached outputs of what in it never trains.

Two cases. A wholly frozen large model (LP, LEVI on the pre-trained model,
the layer probes): its tap list per split (``large_taps``), cached under the
job's ``cache_key``. A light-tuned one (HT, LEVI light-tuned, A3: the top
half of the blocks train) whose backbone can split itself (``bottom`` /
``top``, ``benchmark.models.backbone``): the frozen bottom blocks' taps
(``large_bottom``) and the token states they hand on (``large``, memory-mapped
on disk), cached under a digest of the bottom's weights and of the split's
view, so that every light-tuned kind, seed and invocation shares one
computation and the top blocks train and predict on it (opt-in,
``bottom_cache``). Both are the same function as running the whole network
(float32 states, no dropout in the frozen part); in bfloat16 a row's
rounding depends on its batch's shape, so the light-tuned numbers move
within that rounding (docs/fidelity.md).
"""
from __future__ import annotations

import functools
import hashlib
import re
from typing import Mapping

import jax
import numpy as np
from flax import nnx

from benchmark import mesh as meshlib
from benchmark.batching import _map_batches, map_batches_by_rows
from benchmark.models import params as P
from benchmark.tap_cache import FeatureCache

# A training chunk of cached token states is gathered on the host at once;
# chunks are cut to this many bytes (the same steps, more dispatches).
CHUNK_BYTES = 1 << 30


def large_frozen(model, rules) -> bool:
  """Whether no parameter of ``model``'s large model trains under ``rules``."""
  if getattr(model, "large", None) is None or not hasattr(model, "select_taps"):
    return False
  match = P.rule_matcher(rules)
  return not any(match(k) for k in P.flat_params(model) if k.startswith("large/"))


def frozen_bottom(model, rules) -> int:
  """How many of the large model's first blocks (and what they read, e.g.
  the embeddings) no rule trains, when some block above them trains, the
  backbone can split itself and the task model reads its large model through
  ``benchmark.models.task.large_taps`` (``reads_cached_bottom``); 0 otherwise."""
  large = getattr(model, "large", None)
  if (large is None or not getattr(model, "reads_cached_bottom", False)
      or not hasattr(large, "bottom")):
    return 0
  match = P.rule_matcher(rules)
  trained = [k.removeprefix("large/") for k in P.flat_params(model)
             if k.startswith("large/") and match(k)]
  if not trained:
    return 0
  for blocks in range(large.num_blocks - 1, 0, -1):
    pats = [re.compile(p) for p in large.bottom_patterns(blocks)]
    if not any(p.match(name) for p in pats for name in trained):
      return blocks
  return 0


def digest(arrays: Mapping[str, np.ndarray]) -> str:
  """A content hash of named arrays (names, dtypes, shapes and bytes)."""
  h = hashlib.blake2b(digest_size=10)
  for name in sorted(arrays):
    a = np.ascontiguousarray(arrays[name])
    h.update(f"{name}\x1f{a.dtype.str}\x1f{a.shape}\x1e".encode())
    h.update(memoryview(a).cast("B"))
  return h.hexdigest()


@functools.lru_cache(maxsize=16)
def _compiled_encoder(graphdef):
  @jax.jit
  def encode(state, view):
    return tuple(nnx.merge(graphdef, state)(view, train=False))
  return encode


@functools.lru_cache(maxsize=16)
def _compiled_bottom(graphdef, blocks: int):
  @jax.jit
  def bottom(state, view):
    carry, taps = nnx.merge(graphdef, state).bottom(view, blocks)
    return carry["hidden"], tuple(taps)
  return bottom


def cached_views(job, rules, data: dict, feature_cache: FeatureCache | None) -> dict:
  """``data`` (host arrays by split name) with the large model's frozen part
  replaced by its cached outputs, as the module docstring says; unchanged
  when nothing of the large model is frozen, or ``job.bottom_cache`` is off."""
  model = job.model
  if large_frozen(model, rules):
    return _frozen_taps(job, data, feature_cache)
  blocks = frozen_bottom(model, rules) if job.bottom_cache else 0
  if blocks and job.oov_rate > 0 and any(
      "cat" in arr.get("large", {}) for arr in data.values()):
    blocks = 0  # its training batches replace ids of the large view itself
  return _bottom_states(job, data, feature_cache, blocks) if blocks else data


def _frozen_taps(job, data, feature_cache):
  enc_graph, enc_state = nnx.split(job.model.large)
  encode = _compiled_encoder(enc_graph)
  enc_state = meshlib.put(enc_state, meshlib.replicated())
  cache = feature_cache if (feature_cache is not None and job.cache_key) else FeatureCache()
  key = job.cache_key or "uncached"
  out = {}
  for name, arr in data.items():
    taps = cache.get(key, name, lambda arr=arr: _map_batches(
        lambda b: encode(enc_state, b), arr["large"], len(arr["label"]),
        job.eval_batch_size, job.eval_batch_tokens))
    out[name] = {"large_taps": taps, "small": arr["small"], "label": arr["label"]}
  return out


def _bottom_states(job, data, feature_cache, blocks: int):
  large = job.model.large
  graph, state = nnx.split(large)
  bottom = _compiled_bottom(graph, blocks)
  state = meshlib.put(state, meshlib.replicated())
  weights = {k: v for k, v in P.flat_params(large).items()
             if any(re.match(p, k) for p in large.bottom_patterns(blocks))}
  # The module's own settings (e.g. its compute dtype) change the states
  # that the same weights give, so they are part of the key too.
  settings = repr(getattr(large, "cfg", None)).encode()
  weights["\x00settings"] = np.frombuffer(settings, np.uint8)
  key = f"bottom-{type(large).__name__}-{blocks}-{digest(weights)}"
  cache = feature_cache if feature_cache is not None else FeatureCache()
  out = {}
  for name, arr in data.items():
    view, n = arr["large"], len(arr["label"])
    one = jax.tree.map(lambda a: jax.ShapeDtypeStruct((1, *a.shape[1:]), a.dtype), view)
    hidden, _ = jax.eval_shape(bottom, state, one)

    def fill(big, view=view, n=n):
      taps = None
      for rows, (h, t) in map_batches_by_rows(lambda b: bottom(state, b), view, n,
                                               job.eval_batch_size, job.eval_batch_tokens):
        if taps is None:
          taps = [np.empty((n, *x.shape[1:]), x.dtype) for x in t]
        big[(rows, *map(slice, h.shape[1:]))] = h  # a bucket's positions; the rest stays 0
        for dst, x in zip(taps, t):
          dst[rows] = x
      return taps
    big, *taps = cache.get_mapped(key, f"{name}-{digest(view)}", (n, *hidden.shape[1:]),
                                  hidden.dtype, fill)
    carried = {"hidden": big, **({"mask": view["mask"]} if "mask" in view else {})}
    out[name] = {**arr, "large": carried, "large_bottom": tuple(taps)}
  return out


def chunk_steps(arrays, batch_size: int, steps: int) -> int:
  """At most ``steps`` training steps per dispatch, fewer when their host
  arrays would pass ``CHUNK_BYTES`` (cached token states are large)."""
  per_example = sum(a.dtype.itemsize * int(np.prod(a.shape[1:]))
                    for a in jax.tree.leaves(arrays))
  return max(1, min(steps, CHUNK_BYTES // max(1, per_example * batch_size)))
