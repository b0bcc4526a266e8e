"""Model soups: ingredients are the FT sweep's own components, the uniform
soup is the mean of their weights, the greedy soup never does worse on ID
validation than its best ingredient, and averaging across architectures or
pre-trained starts is refused."""
from __future__ import annotations

import numpy as np
import pytest

from benchmark import protocol
from benchmark.errors import UserError
from methods import METHODS
from methods import soups as S
from tests.harness import smoke_context


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
  return smoke_context(tmp_path_factory.mktemp("wd"))


def test_ingredients_are_the_ft_sweep_and_reuse_the_ft_run(ctx):
  specs = S.ingredient_specs(ctx, 0)
  lr = float(ctx.config.lr.ft)
  assert [s.config["lr"] for s in specs.values()] == pytest.approx([lr / 3, lr, lr * 3])
  assert specs[f"ft@{lr:g}"].key == ctx.spec("ft", 0).key   # the FT row's own run
  assert len({s.key for s in specs.values()}) == 3


def test_uniform_soup_is_the_mean_of_the_weights(ctx):
  rec = protocol.run_method(ctx, METHODS.get("soup_uniform"), 0)
  assert rec["status"] == "ok", rec
  comps = {n: ctx.component(s) for n, s in S.ingredient_specs(ctx, 0).items()}
  ws = [S.full_weights(ctx, c) for c in comps.values()]
  avg = S.average(ws)
  k = "head/kernel"
  np.testing.assert_allclose(avg[k], np.mean([w[k] for w in ws], axis=0), rtol=1e-6)
  assert not np.allclose(ws[0][k], ws[2][k])   # the ingredients differ
  assert rec["info"]["ingredients"] == sorted(
      comps, key=lambda n: -comps[n].record["scores"]["val"])


def test_one_ingredient_soup_is_that_run(ctx):
  lr = float(ctx.config.lr.ft)
  one = smoke_context(ctx.store.root, **{"soup.lrs": str(lr)})   # same store
  out = METHODS.get("soup_uniform").combine(
      one, 0, {n: one.component(s) for n, s in S.ingredient_specs(one, 0).items()})
  ft = ctx.component(ctx.spec("ft", 0)).preds
  for split, p in ft.items():
    np.testing.assert_allclose(out.preds[split], p, atol=1e-5, err_msg=split)


def test_greedy_soup_is_never_worse_than_its_best_ingredient_on_val(ctx):
  rec = protocol.run_method(ctx, METHODS.get("soup_greedy"), 0)
  assert rec["status"] == "ok", rec
  info = rec["info"]
  best = max(info["ingredient_val"].values())
  assert info["val"] >= best - 1e-9
  assert info["ingredients"][0] == max(info["ingredient_val"], key=info["ingredient_val"].get)
  assert rec["scores"]["val"] == pytest.approx(info["val"])


def test_averaging_other_architectures_or_starts_is_refused(ctx):
  ctx.config.soup.kinds = "ft,fs"
  try:
    with pytest.raises(UserError, match="fs with fine-tunings: it starts from random weights"):
      S.ingredient_specs(ctx, 0)
  finally:
    ctx.config.soup.kinds = "ft"
  specs = S.ingredient_specs(ctx, 0)
  a, b = list(specs)[:2]
  w = {a: {"x": np.zeros(3)}, b: {"x": np.zeros(3)}}
  S.check_averageable({a: specs[a], b: specs[b]}, w)   # same start and shapes: fine
  fs = ctx.spec("fs", 0)
  with pytest.raises(UserError, match="different pre-trained models"):
    S.check_averageable({a: specs[a], "fs": fs}, {a: w[a], "fs": w[b]})
  with pytest.raises(UserError, match="parameter x has shapes"):
    S.check_averageable({a: specs[a], b: specs[b]}, {a: w[a], b: {"x": np.zeros(4)}})
  with pytest.raises(UserError, match="different parameters"):
    S.check_averageable({a: specs[a], b: specs[b]}, {a: w[a], b: {"y": np.zeros(3)}})
