"""``protocol.max_train_large``: components that train the large model see a
capped, seeded sample of the ID training rows (ids it leaves unseen mapped to
the out-of-vocabulary id); those on a frozen large model or none see them
all; keys change only where the cap applies."""
from __future__ import annotations

import numpy as np
import pytest

from benchmark.data import OOV_ID, REGRESSION, AuxTask, DatasetInfo, ShiftSplits, Split, cap_train
from benchmark.errors import UserError
from benchmark.kinds import KINDS
from tests.harness import smoke_context


def _splits(n=200, vocab=60, seed=0):
  rng = np.random.default_rng(seed)
  ids = lambda m: rng.integers(1, vocab, (m, 2)).astype(np.int32)
  split = lambda c: Split({"num": np.arange(len(c), dtype=np.float32)[:, None]}, {"cat": c},
                          np.arange(len(c), dtype=np.float32))
  info = DatasetInfo("toy_cap", REGRESSION, 1, {"num": 1}, {"cat_vocab": (vocab, vocab)})
  return ShiftSplits(info, split(ids(n)), split(ids(50)), split(ids(50)), {"g": split(ids(50))})


def test_cap_keeps_a_nested_seeded_sample_in_order():
  s = _splits()
  small, large = cap_train(s, 30), cap_train(s, 80)
  kept = lambda c: c.train.large["num"][:, 0].astype(int)
  assert len(small.train) == 30 and len(large.train) == 80
  assert np.all(np.diff(kept(small)) > 0)             # the split's order
  assert set(kept(small)) <= set(kept(large))          # nested
  assert not np.array_equal(kept(small), np.arange(30))  # a sample, not the head
  np.testing.assert_array_equal(kept(cap_train(s, 30)), kept(small))  # seeded
  np.testing.assert_array_equal(small.train.label, kept(small))  # rows stay aligned
  assert cap_train(s, 0) is s and cap_train(s, 200) is s and cap_train(s, 500) is s


def test_ids_unseen_in_the_cut_become_the_oov_id_everywhere():
  s = _splits()
  c = cap_train(s, 20)
  for j in range(2):
    seen = set(c.train.small["cat"][:, j].tolist())
    assert OOV_ID not in seen
    for name, split in c.eval_splits().items():
      orig = s.eval_splits()[name].small["cat"][:, j]
      got = split.small["cat"][:, j]
      known = np.isin(orig, list(seen))
      np.testing.assert_array_equal(got[known], orig[known])
      assert np.all(got[~known] == OOV_ID), name
      assert (~known).any(), name  # 20 rows leave most of 59 ids unseen
  # The input is not modified, and views without ids pass through.
  assert s.val.small["cat"].min() >= 1
  np.testing.assert_array_equal(c.val.large["num"], s.val.large["num"])


def test_auxiliary_tasks_are_cut_too():
  s = _splits()
  aux = AuxTask("a", "toy", REGRESSION, 1, s.train, s.val)
  c = cap_train(aux, 25)
  assert isinstance(c, AuxTask) and len(c.train) == 25 and len(c.val) == len(s.val)


def test_the_cap_reaches_exactly_the_kinds_that_train_the_large_model(tmp_path):
  base = smoke_context(tmp_path / "a")
  capped = smoke_context(tmp_path / "b", **{"protocol.max_train_large": 40})
  for kind in ("ft", "ht", "levi_light", "levi_full", "a3", "lp_ft"):
    assert KINDS.get(kind).is_capped, kind
    assert capped.spec(kind, 0).config["max_train"] == 40, kind
    assert capped.spec(kind, 0).key != base.spec(kind, 0).key, kind
  for kind in ("lp", "levi_frozen", "small", "small_multi"):
    assert not KINDS.get(kind).is_capped, kind
    assert capped.spec(kind, 0).key == base.spec(kind, 0).key, kind
  # The pre-training trains on its own rows: never capped, so neither are
  # the keys of everything that starts from it.
  assert capped.pretrain_spec().key == base.pretrain_spec().key
  assert "max_train" not in base.spec("ft", 0).config


def test_a_capped_component_trains_on_the_cut_and_is_scored_on_every_row(tmp_path):
  ctx = smoke_context(tmp_path, **{"protocol.max_train_large": 40})
  n_full = len(ctx.splits.train)
  assert n_full > 40
  ft, lp = ctx.spec("ft", 0), ctx.spec("lp", 0)
  assert len(ctx.training_data(ft)[0].train) == 40
  assert ctx.training_data(lp)[0] is ctx.splits
  assert ctx.training_data(ctx.spec("ht", 0))[0] is ctx.training_data(ft)[0]  # one cut
  rec = ctx.component(ft).record
  bs = min(int(ctx.config.batch_size), 40)
  assert rec["steps"] == int(ctx.config.epochs) * (40 // bs)
  for split, s in ctx.splits.eval_splits().items():
    assert len(ctx.component(ft).preds[split]) == len(s), split


def test_a_negative_cap_is_one_line(tmp_path):
  with pytest.raises(UserError, match="protocol.max_train_large"):
    smoke_context(tmp_path, **{"protocol.max_train_large": -5})


@pytest.mark.parametrize("dataset", ["movielens_genre", "amazon_reviews", "amazon_reviews_text"])
def test_cpu_presets_cap_only_the_large_model_trainers(dataset):
  from benchmark import setup
  c = setup.resolve_config(dataset, "cpu", {})
  assert c.protocol.max_train_large == 1000
  assert c.data[dataset].max_train == (0 if dataset == "movielens_genre" else 100_000)
