"""Host-side batching: batch sizes over the mesh, token views cut to the
positions they need (length-bucketed prediction), and training batches whose
categorical ids are replaced by the out-of-vocabulary id."""
from __future__ import annotations

from typing import Any, Mapping

import jax
import numpy as np

from benchmark import mesh as meshlib
from benchmark.data import OOV_ID

def _round_batch(bs: int, n: int) -> int:
  shards = meshlib.num_data_shards()
  bs = min(bs, n)
  bs -= bs % shards
  if bs <= 0:
    raise ValueError(f"{n} examples cannot fill a batch over {shards} devices")
  return bs


def eval_batch(n: int, bs: int) -> int:
  """Batch size for predicting ``n`` examples: a power of two (at least the
  device count, at most ``bs``), so that splits of any size share a few
  compiled shapes instead of compiling one program per split length."""
  shards = meshlib.num_data_shards()
  b = max(shards, 1 << max(0, (n - 1).bit_length()))
  b = min(b, max(shards, bs - bs % shards))
  return b - b % shards


SEQ_MULTIPLE = 8  # token views are cut to a multiple of this many positions


def _token_mask(arrays) -> np.ndarray | None:
  """The ``[N, T]`` token mask of a right-padded token view (the view itself
  or an example tree's ``"large"`` entry), or None for other views."""
  for view in (arrays, arrays.get("large") if isinstance(arrays, Mapping) else None):
    if isinstance(view, Mapping) and "mask" in view and np.ndim(view["mask"]) == 2:
      return np.asarray(view["mask"])
  return None


def _cut_tokens(arrays, length: int):
  """``arrays`` with every ``[N, T]`` leaf of its token view cut to ``length``
  positions. Right padding is masked out of attention and pooling, so the
  cut changes no output; it saves the padded positions' compute."""
  def cut(view):  # [N, T] leaves, and [N, T, H] ones (a frozen bottom's token states)
    t = view["mask"].shape[1]
    return {k: (v[:, :length] if np.ndim(v) >= 2 and v.shape[1] == t else v)
            for k, v in view.items()}
  if "mask" in arrays:
    return cut(arrays)
  return {**arrays, "large": cut(arrays["large"])}


def _needed_length(mask: np.ndarray) -> int:
  """Positions that hold every token of ``mask``'s rows, rounded up to
  ``SEQ_MULTIPLE`` (so that batches share a few compiled shapes)."""
  t = mask.shape[1]
  longest = int(mask.sum(axis=1).max()) if len(mask) else 1
  return min(t, -(-max(longest, 1) // SEQ_MULTIPLE) * SEQ_MULTIPLE)


def trim_tokens(arrays):
  """``arrays`` cut to the positions its longest token sequence needs."""
  mask = _token_mask(arrays)
  return arrays if mask is None else _cut_tokens(arrays, _needed_length(mask))


def _map_batches(fn, arrays, n: int, bs: int, tokens: int = 0) -> Any:
  """Applies jitted ``fn`` to padded, sharded batches of host ``arrays``;
  concatenates the outputs (in the input order) and cuts the padding.

  Token views are bucketed: examples go in order of length and each batch is
  cut to the positions its longest example needs, rounded up to
  ``SEQ_MULTIPLE``. Outputs are per example, so the order is undone after.
  ``tokens`` > 0 also caps a batch at that many positions (a power of two of
  examples, at most ``bs``): on a CPU a text model's forward runs 1.6x
  faster at 64 x 56 tokens than at 1024 x 56 (docs/performance.md)."""
  got = list(map_batches_by_rows(fn, arrays, n, bs, tokens))
  out = jax.tree.map(lambda *xs: np.concatenate(xs), *[o for _, o in got])
  if _token_mask(arrays) is None:
    return out
  order = np.concatenate([rows for rows, _ in got])
  inverse = np.empty_like(order)
  inverse[order] = np.arange(n)
  return jax.tree.map(lambda o: o[inverse], out)


def map_batches_by_rows(fn, arrays, n: int, bs: int, tokens: int = 0):
  """``_map_batches``'s batches one at a time: yields ``(rows, outputs)``,
  the example rows of each batch (padding cut) and ``fn``'s host outputs on
  them, in the bucketed order; a caller may write them into place (e.g. a
  memory-mapped array) instead of holding every batch."""
  b_max = eval_batch(n, bs)
  shards = meshlib.num_data_shards()
  sharding = meshlib.batch_sharding(0)
  mask = _token_mask(arrays)
  lengths = mask.sum(axis=1) if mask is not None else None
  order = (np.argsort(lengths, kind="stable") if mask is not None else np.arange(n))
  start = 0
  while start < n:
    b = b_max
    if tokens > 0 and mask is not None:
      # The largest power of two of examples whose chunk fits; sorted by
      # length, a chunk's longest example is its last.
      longest = lambda b: _needed_length(mask[order[min(start + b, n) - 1]][None])
      while b // 2 >= shards and b % 2 == 0 and b * longest(b) > tokens:
        b //= 2
    idx = order[start:start + b]
    start += b
    pad = b - len(idx)  # one batch size for every batch, the last one included
    rows = idx
    idx = np.concatenate([idx, np.full(pad, idx[0], idx.dtype)]) if pad else idx
    batch = jax.tree.map(lambda a: a[idx], arrays)
    if mask is not None:
      batch = _cut_tokens(batch, _needed_length(mask[idx]))
    batch = meshlib.put(batch, sharding, batch_axis=0)
    yield rows, jax.tree.map(lambda o: meshlib.fetch(o)[: len(rows)], fn(batch))


def replace_with_oov(chunk, rate: float, rng: np.random.Generator):
  """``chunk`` with each categorical id (the ``cat`` leaf of a view) replaced
  by ``OOV_ID`` with probability ``rate``; other leaves untouched. Drawn on
  the host from ``rng``, so a batch is a pure function of the seed."""
  out = dict(chunk)
  for name in ("small", "large"):
    view = chunk.get(name)
    if isinstance(view, Mapping) and "cat" in view:
      cat = np.asarray(view["cat"])
      drop = rng.random(cat.shape) < rate
      out[name] = {**view, "cat": np.where(drop, OOV_ID, cat).astype(cat.dtype)}
  return out
