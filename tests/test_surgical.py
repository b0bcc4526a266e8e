"""Surgical fine-tuning: one block of the large model and the head train, the
block chosen on ID validation."""
from __future__ import annotations

import pytest

from benchmark.errors import UserError
from methods import METHODS
from tests.harness import smoke_context


def test_only_the_chosen_block_and_the_head_train(tmp_path):
  ctx = smoke_context(tmp_path)
  res = ctx.component(ctx.spec("surgical", 0, block=1))
  trained = {k for k in res.params if not k.startswith("state:")}
  assert trained and all(k.startswith(("head/", "large/blocks/1/")) for k in trained), trained
  assert any(k.startswith("large/blocks/1/") for k in trained)
  assert res.record["n_trainable"] < res.record["n_params"]


def test_one_candidate_per_block_and_the_best_val_is_kept(tmp_path):
  ctx = smoke_context(tmp_path)
  m = METHODS.get("surgical")
  specs = m.specs(ctx, 0)
  assert list(specs) == [f"block{b}" for b in range(ctx.num_blocks())]
  comps = {n: ctx.component(s) for n, s in specs.items()}
  out = m.combine(ctx, 0, comps)
  vals = {n: c.record["scores"]["val"] for n, c in comps.items()}
  assert vals[out.info["chosen"]] == max(vals.values())
  assert out.info["setting"] == {"block": int(out.info["chosen"][len("block"):])}


def test_blocks_config_is_checked(tmp_path):
  ctx = smoke_context(tmp_path, **{"surgical.blocks": "0,9"})
  with pytest.raises(UserError, match="surgical.blocks"):
    METHODS.get("surgical").specs(ctx, 0)
  ctx = smoke_context(tmp_path, **{"surgical.blocks": "2"})
  assert list(METHODS.get("surgical").specs(ctx, 0)) == ["block2"]
