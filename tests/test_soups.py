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


# -- Model Ratatouille ----------------------------------------------------------------

def test_ratatouille_recycles_one_aux_fine_tuning_per_task_for_every_seed(ctx):
  s0, s1 = (METHODS.get("ratatouille").specs(ctx, s) for s in (0, 1))
  assert list(s0) == ["lp_ft", "lp_ft_aux:s1_task", "lp_ft_aux:s2_reversed"]
  assert s0["lp_ft"].key == ctx.spec("lp_ft", 0).key   # the LP->FT row's own run
  for name in ("s1_task", "s2_reversed"):
    a0, a1 = s0[f"lp_ft_aux:{name}"], s1[f"lp_ft_aux:{name}"]
    assert a0.key != a1.key                            # one target fine-tuning per seed
    assert a0.dep("aux").key == a1.dep("aux").key      # from one auxiliary fine-tuning
    assert a0.dep("lp").key == ctx.spec("lp", 0).key   # with the target's LP head
    assert a0.config["lr"] == s0["lp_ft"].config["lr"]
  assert len({s0[f"lp_ft_aux:{n}"].dep("aux").key for n in ("s1_task", "s2_reversed")}) == 2


def test_lp_ft_aux_starts_from_the_aux_fine_tuning_and_the_lp_head(ctx):
  from benchmark.models import params as P
  from flax import nnx
  spec = ctx.aux_spec("lp_ft_aux", "s2_reversed", 0)
  aux = ctx.component(spec.dep("aux"))
  assert aux.record["metric"] == "acc" and set(aux.record["scores"]) == {"val"}
  assert aux.record["scores"]["val"] > 75      # s2_reversed is learnable
  lp = ctx.component(spec.dep("lp")).params
  model, _, _ = ctx.build(spec)
  got = P.flat_state(nnx.state(model, nnx.Param))
  pre = ctx.pretrained_large()
  moved = 0
  for k, v in aux.params.items():
    if k.startswith("large/"):
      np.testing.assert_array_equal(got[k], v, err_msg=k)
      moved += not np.allclose(v, pre[k[len("large/"):]])
  assert moved > 0                              # not the pre-trained weights
  np.testing.assert_array_equal(got["head/kernel"], lp["head/kernel"])
  assert aux.params["head/kernel"].shape[-1] == ctx.splits.aux["s2_reversed"].out_dim


def test_ratatouille_is_the_mean_of_its_ingredients_and_greedy_never_worse(ctx):
  m = METHODS.get("ratatouille")
  comps = {n: ctx.component(s) for n, s in m.specs(ctx, 0).items()}
  out = m.combine(ctx, 0, comps)
  assert sorted(out.info["ingredients"]) == sorted(comps)
  from benchmark.models.task import LargeWithHead
  from benchmark.models import params as P
  from flax import nnx
  model = LargeWithHead(ctx.build_large(nnx.Rngs(0)), ctx.info.out_dim, rngs=nnx.Rngs(0))
  P.load_params(model, S.average([S.full_weights(ctx, c) for c in comps.values()]),
                strict=True)
  np.testing.assert_allclose(ctx.predict(model)["ood/x_only"], out.preds["ood/x_only"],
                             atol=1e-6)
  g = METHODS.get("ratatouille_greedy").combine(ctx, 0, comps)
  assert g.info["val"] >= max(g.info["ingredient_val"].values()) - 1e-9


def test_ratatouille_needs_declared_aux_tasks(ctx, tmp_path):
  ctx.config.ratatouille.aux = "s1_task,nope"
  try:
    with pytest.raises(UserError, match="declares the auxiliary tasks s1_task, s2_reversed"):
      METHODS.get("ratatouille").specs(ctx, 0)
  finally:
    ctx.config.ratatouille.aux = ""
  ctx.config.ratatouille.aux = "s2_reversed"
  try:
    assert list(METHODS.get("ratatouille").specs(ctx, 0)) == ["lp_ft", "lp_ft_aux:s2_reversed"]
  finally:
    ctx.config.ratatouille.aux = ""
  import dataclasses
  bare = smoke_context(tmp_path)
  bare.splits = dataclasses.replace(bare.splits, aux={})
  with pytest.raises(UserError, match="declares no auxiliary tasks"):
    METHODS.get("ratatouille").specs(bare, 0)
