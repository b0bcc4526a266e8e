"""The vision rows on EfficientNet-Lite0 with its ImageNet weights, in process,
on the synthetic image benchmark of test_vision_methods: the methods train
and score, light-tuning trains the top half of the stages, the pre-trained
batch-norm statistics are loaded and never change, from scratch trains its
own, and the LoRA rows are refused."""
from __future__ import annotations

import numpy as np
import pytest

from benchmark import protocol
from benchmark.components import Context
from benchmark.store import RunStore
from methods import METHODS
from tests.harness import smoke_config
from tests.test_vision_methods import _splits, check_scores


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
  config = smoke_config("synthetic_spurious", **{
      "epochs": 2, "batch_size": 16, "eval_batch_size": 64, "model.adapter_hidden": 16})
  return Context(_splits(), config, "efficientnet_lite0",
                 RunStore(tmp_path_factory.mktemp("wd")))


# The vision rows of Table 2 that differ in how they use EfficientNet (the
# ablations, a3 among them, are tables of the recommendation tasks only).
@pytest.mark.slow
@pytest.mark.parametrize("method", ["ft", "lp", "levi", "ft_zeroshot"])
def test_rows_train_and_score(ctx, method):
  rec = protocol.run_method(ctx, METHODS.get(method), 0)
  check_scores(ctx, method, rec)
  if method == "ft_zeroshot":   # the alpha chosen is a grid value and scored its val
    assert rec["info"]["alpha"] in list(ctx.config.wise_alphas)
    assert rec["info"]["val"] == rec["scores"]["val"]


def test_lora_rows_are_refused_without_attention(ctx):
  from benchmark.errors import UserError
  assert ctx.backbone.lora_targets is None
  for name in ("lora", "levi_lora"):
    m = METHODS.get(name)
    assert m.why_not(ctx) == "efficientnet_lite0 has no attention projections for LoRA"
    with pytest.raises(UserError, match="efficientnet_lite0 has no LoRA targets"):
      protocol.run_method(ctx, m, 0)
  from benchmark.cli.runs import applicable
  kept, why = applicable(ctx, [METHODS.get(n) for n in ("ft", "lora", "levi_lora")],
                         progress=lambda msg: None)
  assert [m.name for m in kept] == ["ft"] and set(why) == {"lora", "levi_lora"}
  assert not list(ctx.store.root.rglob("lora*"))   # nothing of them trained or written


@pytest.mark.slow
def test_light_tuning_trains_the_top_half_of_the_stages(ctx):
  ht = ctx.component(ctx.spec("ht", 0))
  large = {k for k in ht.params if k.startswith("large/")}
  assert large and all(k.startswith(("large/stages/4/", "large/stages/5/",
                                     "large/stages/6/", "large/head/")) for k in large)
  assert any(k.startswith("large/head/") for k in large)
  levi = ctx.component(ctx.spec("levi_light", 0))
  assert {k for k in levi.params if k.startswith("large/")} == large
  assert len(levi.record["config"]["taps"]) == 8   # one adapting layer per tapped block


def test_pretrained_batch_norm_statistics_are_loaded_and_kept(ctx):
  pre = ctx.pretrained_large()
  mean = pre["stages/3/0/dw/bn/mean"]
  assert np.abs(mean).max() > 0.01   # real statistics, not the initial zeros
  ft = ctx.component(ctx.spec("ft", 0))
  stats = {k[len("state:"):]: v for k, v in ft.params.items() if k.startswith("state:")}
  for k, v in stats.items():   # FT stored the statistics it used: the pre-trained ones
    if k.startswith("large/"):
      np.testing.assert_array_equal(v, pre[k[len("large/"):]], err_msg=k)


@pytest.mark.slow
def test_from_scratch_trains_its_batch_norm_statistics(ctx):
  spec = ctx.spec("fs", 0)
  assert spec.config["batch_norm"] == "batch statistics"
  fs = ctx.component(spec)
  mean = fs.params["state:large/stages/3/0/dw/bn/mean"]
  assert np.abs(mean).max() > 0   # updated from its initial zeros
  assert fs.record["status"] == "ok"
