"""Values never seen in ID training (id 0, the out-of-vocabulary bucket) get
a trained embedding: training batches replace ids with it at
``model.oov_rate``; specs of networks whose trained embeddings read a
categorical view carry the rate, and no other spec changes."""
from __future__ import annotations

import numpy as np
import pytest
from flax import nnx

from benchmark import trainer as T
from benchmark.data import REGRESSION, DatasetInfo, ShiftSplits, Split
from benchmark.models.small import EmbeddingMLP
from benchmark.models.task import LayerwiseEnsemble
from tests.harness import smoke_context


def _splits(n=256, vocab=20, seed=0):
  """Ids 1..vocab-1 in training; OOD rows carry id 0 only (all unseen)."""
  rng = np.random.default_rng(seed)
  ids = rng.integers(1, vocab, (n, 1)).astype(np.int32)
  y = (ids[:, 0] % 5).astype(np.float32)
  split = lambda c, lab: Split({"num": np.zeros((len(lab), 1), np.float32)}, {"cat": c}, lab)
  info = DatasetInfo("toy_ids", REGRESSION, 1, {"num": 1}, {"cat_vocab": (vocab,)})
  zeros = np.zeros((64, 1), np.int32)
  return ShiftSplits(info, split(ids, y), split(ids[:64], y[:64]), split(ids[:64], y[:64]),
                     {"unseen": split(zeros, np.full(64, 2.0, np.float32))})


def _train(splits, rate, seed=0):
  model = LayerwiseEnsemble(None, EmbeddingMLP(splits.info.small_spec, (16,), 4,
                                               rngs=nnx.Rngs(seed)),
                            None, 1, 8, 1, rngs=nnx.Rngs(seed))
  before = np.asarray(model.small.embed.embeds[0].embedding[...]).copy()
  job = T.TrainJob(model=model, rules=[(r".*", True)], task=REGRESSION, lr=1e-2, epochs=3,
                   batch_size=32, seed=seed, oov_rate=rate,
                   label_scale=T.label_scale(REGRESSION, splits.train.label))
  res = T.train(job, splits)
  after = res.trainable["small/embed/embeds/0/embedding"]
  return before, after, res


def test_oov_row_trains_only_with_a_rate():
  splits = _splits()
  before, after, _ = _train(splits, 0.0)
  np.testing.assert_array_equal(before[0], after[0])  # no row 0 in any batch: untouched
  assert not np.allclose(before[1:], after[1:])
  before, after, _ = _train(splits, 0.2)
  assert np.abs(before[0] - after[0]).max() > 1e-3


def test_replacement_is_a_function_of_the_seed_and_spares_other_leaves():
  chunk = {"small": {"cat": np.arange(1, 1001, dtype=np.int32).reshape(2, 500),
                     "num": np.ones((2, 500))},
           "label": np.ones(2)}
  a = T.replace_with_oov(chunk, 0.1, np.random.default_rng([3, 0, 15]))
  b = T.replace_with_oov(chunk, 0.1, np.random.default_rng([3, 0, 15]))
  np.testing.assert_array_equal(a["small"]["cat"], b["small"]["cat"])
  share = float(np.mean(a["small"]["cat"] == 0))
  assert 0.05 < share < 0.15
  assert a["small"]["cat"].dtype == np.int32
  np.testing.assert_array_equal(a["small"]["num"], chunk["small"]["num"])
  np.testing.assert_array_equal(chunk["small"]["cat"].min(), 1)  # input not modified


def test_unseen_ids_get_a_seed_independent_prediction():
  """With the rate, an unseen id's prediction no longer rides on a random
  vector: its spread over seeds shrinks to near that of seen ids."""
  splits = _splits()
  spread = {}
  for rate in (0.0, 0.2):
    ood = [_train(splits, rate, seed)[2].preds["ood/unseen"].mean() for seed in range(4)]
    spread[rate] = float(np.std(ood))
  assert spread[0.2] < 0.5 * spread[0.0]


def test_specs_carry_the_rate_where_a_trained_embedding_reads_ids(tmp_path):
  ctx = smoke_context(tmp_path, "movielens_genre")
  rate = float(ctx.config.model.oov_rate)
  assert rate > 0
  for kind in ("small", "small_multi", "levi_frozen", "levi_light"):
    assert ctx.spec(kind, 0).config["oov_rate"] == rate, kind
  # The text model reads no ids: its components keep their keys.
  for kind in ("ft", "lp", "a3"):
    assert "oov_rate" not in ctx.spec(kind, 0).config, kind
  off = smoke_context(tmp_path, "movielens_genre", **{"model.oov_rate": 0.0})
  assert "oov_rate" not in off.spec("small", 0).config


def test_synthetic_benchmark_has_no_ids_and_keeps_its_keys(tmp_path):
  ctx = smoke_context(tmp_path)
  for kind in ("ft", "small", "levi_light", "pretrain"):
    spec = ctx.pretrain_spec() if kind == "pretrain" else ctx.spec(kind, 0)
    assert "oov_rate" not in spec.config


def test_rate_out_of_range_is_one_line(tmp_path):
  from benchmark.errors import UserError
  with pytest.raises(UserError, match="model.oov_rate"):
    smoke_context(tmp_path, **{"model.oov_rate": 1.5})
