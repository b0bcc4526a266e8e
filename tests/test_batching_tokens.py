"""``eval_batch_tokens``: prediction batches of token views hold at most that
many positions, and the outputs are those of uncapped batching."""
from __future__ import annotations

import numpy as np

from benchmark.batching import _map_batches


def _views(n=300, t=64, seed=0):
  rng = np.random.default_rng(seed)
  lengths = rng.integers(3, t + 1, n)
  mask = (np.arange(t)[None] < lengths[:, None]).astype(np.int32)
  ids = rng.integers(1, 100, (n, t)).astype(np.int32) * mask
  return {"ids": ids, "mask": mask}, lengths


def test_capped_batches_give_the_same_outputs_and_stay_under_the_cap():
  arrays, lengths = _views()
  seen = []

  def fn(b):
    seen.append(b["ids"].shape)
    return (b["ids"] * b["mask"]).sum(axis=1)

  want = (arrays["ids"] * arrays["mask"]).sum(axis=1)
  plain = np.asarray(_map_batches(fn, arrays, len(lengths), 1024))
  assert len(seen) == 1 and seen[0][0] == 512
  seen.clear()
  capped = np.asarray(_map_batches(fn, arrays, len(lengths), 1024, tokens=512))
  np.testing.assert_array_equal(plain, want)
  np.testing.assert_array_equal(capped, want)
  assert len(seen) > 3
  assert all(b * t <= 512 for b, t in seen), seen
  assert all(b & (b - 1) == 0 for b, _ in seen)  # powers of two: few compiled shapes
  # Short sequences get large batches, long ones small.
  assert seen[0][0] > seen[-1][0]


def test_views_without_tokens_ignore_the_cap():
  x = {"num": np.arange(50, dtype=np.float32)[:, None]}
  seen = []
  out = _map_batches(lambda b: seen.append(len(b["num"])) or b["num"][:, 0], x, 50, 1024,
                     tokens=8)
  np.testing.assert_array_equal(np.asarray(out), np.arange(50))
  assert seen == [64]
