"""The frozen bottom of a light-tuned large model (``bottom_cache``): its
blocks run once per split and weights, their token states cached (on disk,
memory-mapped) and shared by every light-tuned job; the top blocks train and
predict on them with the same numbers as running the whole network (float32;
opt-in, since in bfloat16 the rounding follows the batch shapes)."""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from benchmark import frozen_views as FV
from benchmark import trainer as T
from benchmark.models.bert import BertConfig, BertEncoder
from benchmark.tap_cache import FeatureCache
from tests.harness import smoke_context


def _tiny_bert(seed=0):
  cfg = BertConfig(vocab_size=50, hidden_size=16, num_layers=4, num_heads=2,
                   intermediate_size=32, max_position=16)
  return BertEncoder(cfg, rngs=nnx.Rngs(seed))


def _token_view(n=6, t=12, seed=0):
  rng = np.random.default_rng(seed)
  lengths = rng.integers(2, t + 1, n)
  mask = (np.arange(t)[None] < lengths[:, None]).astype(np.int32)
  return {"ids": (rng.integers(1, 50, (n, t)) * mask).astype(np.int32), "mask": mask}


@pytest.mark.parametrize("blocks", [1, 2, 3])
def test_bert_bottom_then_top_is_the_whole_network(blocks):
  m = _tiny_bert()
  view = {k: jnp.asarray(v) for k, v in _token_view().items()}
  whole = m(view)
  carry, bottom = m.bottom(view, blocks)
  assert len(bottom) == blocks and carry["hidden"].shape == (6, 12, 16)
  # Padded positions of the carried states are not read: zeroing them changes nothing.
  zeroed = {"hidden": carry["hidden"] * view["mask"][..., None], "mask": view["mask"]}
  for c in (carry, zeroed):
    taps = list(bottom) + list(m.top(c, blocks))
    assert len(taps) == len(whole)
    for a, b in zip(taps, whole):
      np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-6)


def _light_job(ctx, kind, **changes):
  spec = ctx.spec(kind, 0)
  model, rules, extra = ctx.build(spec)
  data, task = ctx.training_data(spec)
  job = dataclasses.replace(ctx.runner._job(spec, model, rules, extra, data, task),
                            defer_eval=False, **changes)
  return job, data


@pytest.fixture(scope="module")
def movielens(tmp_path_factory):
  return smoke_context(tmp_path_factory.mktemp("ml"), "movielens_genre", epochs=2)


def test_light_kinds_freeze_half_the_blocks_and_others_none(movielens):
  for kind, want in (("ht", 3), ("levi_light", 3), ("a3", 3), ("ft", 0),
                     ("levi_lora", 0), ("lp", 0)):
    job, _ = _light_job(movielens, kind)
    rules = tuple((r, bool(t)) for r, t in job.rules)
    assert FV.frozen_bottom(job.model, rules) == want, kind


@pytest.mark.slow
def test_cached_bottom_trains_and_predicts_as_the_whole_network(movielens, tmp_path):
  # LEVI: the small model and adapters beside the top blocks (HT's head reads
  # the same ``large_taps``; one kind keeps the suite's time down).
  kind = "levi_light"
  plain_job, data = _light_job(movielens, kind, bottom_cache=False)
  plain = T.train(plain_job, data)
  cache = FeatureCache(tmp_path / "taps")
  job, data = _light_job(movielens, kind, bottom_cache=True)
  cached = T.train(job, data, cache)
  assert cache.misses == 4 and cache.hits == 0  # train, val, test_id, OOD: once each
  np.testing.assert_allclose(cached.loss_curve, plain.loss_curve, rtol=1e-5)
  for split, p in plain.preds.items():
    np.testing.assert_allclose(cached.preds[split], p, rtol=1e-5, atol=1e-5, err_msg=split)
  # On disk the token states are memory-mapped .npy files, read back as such.
  bigs = sorted((tmp_path / "taps").rglob("*.big.npy"))
  assert len(bigs) == 4
  again = FeatureCache(tmp_path / "taps")
  job2, data2 = _light_job(movielens, kind, bottom_cache=True)
  T.train(job2, data2, again)
  assert again.misses == 0 and again.hits == 4
  held = again._d[next(iter(again._d))][0]
  assert isinstance(held, np.memmap)


def test_the_key_follows_the_bottom_weights_and_the_data(movielens, tmp_path):
  cache = FeatureCache(tmp_path / "taps")
  job, data = _light_job(movielens, "ht", bottom_cache=True)
  rules = tuple((r, bool(t)) for r, t in job.rules)
  views = {"val": data.val.arrays()}
  FV.cached_views(job, rules, views, cache)
  FV.cached_views(job, rules, views, cache)  # the same weights and rows: shared
  assert (cache.misses, cache.hits) == (1, 1)
  # A top-block weight is not part of the key; a bottom one is.
  large = job.model.large
  large.layers[3].output.kernel[...] = large.layers[3].output.kernel[...] + 1.0
  FV.cached_views(job, rules, views, cache)
  assert (cache.misses, cache.hits) == (1, 2)
  large.layers[0].output.kernel[...] = large.layers[0].output.kernel[...] + 1.0
  FV.cached_views(job, rules, views, cache)
  assert cache.misses == 2
  other = {"val": jax.tree.map(lambda a: a[:-1], views["val"])}  # other rows
  FV.cached_views(job, rules, other, cache)
  assert cache.misses == 3
  # The same weights computed in another dtype give other states.
  large.cfg = dataclasses.replace(large.cfg, compute_dtype="bfloat16")
  FV.cached_views(job, rules, other, cache)
  assert cache.misses == 4


def test_off_by_default_and_off_runs_the_whole_network(movielens):
  from benchmark import setup
  for preset in ("smoke", "cpu", "paper"):
    assert setup.resolve_config("movielens_genre", preset, {}).bottom_cache is False
  job, data = _light_job(movielens, "ht")
  assert job.bottom_cache is False
  rules = tuple((r, bool(t)) for r, t in job.rules)
  views = {"val": data.val.arrays()}
  assert FV.cached_views(job, rules, views, None) is views


def test_chunks_of_token_states_are_cut_to_the_byte_budget(monkeypatch):
  arrays = {"hidden": np.zeros((10, 4, 8), np.float32), "mask": np.zeros((10, 4), np.int32)}
  per_step = 2 * (4 * 8 * 4 + 4 * 4)
  monkeypatch.setattr(FV, "CHUNK_BYTES", 3 * per_step)
  assert FV.chunk_steps(arrays, 2, 5) == 3
  assert FV.chunk_steps(arrays, 2, 2) == 2
  monkeypatch.setattr(FV, "CHUNK_BYTES", 1)
  assert FV.chunk_steps(arrays, 2, 5) == 1
