"""``trim_batches``: each training batch of a text model cut to the positions
its own longest sequence needs: the same batches in the same order, fewer
padded positions, the same model up to float rounding; off by default."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from benchmark import trainer as T
from tests.harness import smoke_context


def _train(ctx, monkeypatch, trim: bool):
  """FT seed 0 as the runner would train it, with ``trim_batches`` = ``trim``;
  the batch cuts it made."""
  cuts = []
  real = T._cut_tokens
  monkeypatch.setattr(T, "_cut_tokens", lambda arrays, n: cuts.append(
      (n, np.asarray(arrays["large"]["mask"]).copy())) or real(arrays, n))
  spec = ctx.spec("ft", 0)
  model, rules, extra = ctx.build(spec)
  data, task = ctx.training_data(spec)
  job = dataclasses.replace(ctx.runner._job(spec, model, rules, extra, data, task),
                            trim_batches=trim, defer_eval=False)
  return T.train(job, data), cuts


@pytest.mark.slow
def test_trimmed_batches_are_the_same_batches_with_less_padding(tmp_path, monkeypatch):
  # 80 positions: the smoke preset's 32 cut every MovieLens sentence to one length.
  ctx = smoke_context(tmp_path, "movielens_genre", epochs=1,
                      **{"backbones.minilm_l6.max_len": 80})
  plain, none = _train(ctx, monkeypatch, False)
  assert none == []
  trimmed, cuts = _train(ctx, monkeypatch, True)
  assert len(cuts) == plain.steps == trimmed.steps
  split_len = T._needed_length(np.asarray(T.trim_tokens(ctx.splits.train.arrays())["large"]["mask"]))
  lengths = [n for n, _ in cuts]
  assert max(lengths) <= split_len and min(lengths) < split_len
  for n, mask in cuts:  # each cut keeps every token of its batch
    assert n % T.SEQ_MULTIPLE == 0 and n >= mask.sum(axis=1).max()
    assert n - mask.sum(axis=1).max() < T.SEQ_MULTIPLE
  # The same training up to float rounding (bfloat16-free smoke preset).
  np.testing.assert_allclose(trimmed.loss_curve, plain.loss_curve,
                             rtol=1e-4)
  for split, p in plain.preds.items():
    np.testing.assert_allclose(trimmed.preds[split], p, rtol=1e-4, atol=1e-4, err_msg=split)


def test_off_by_default():
  from benchmark import setup
  for preset in ("smoke", "cpu", "paper"):
    assert setup.resolve_config("movielens_genre", preset, {}).trim_batches is False
