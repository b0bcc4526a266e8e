"""L2-SP: the kind's loss term, its pull towards the pre-trained weights,
the choice of alpha on ID validation, and a regulariser without a start point."""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from benchmark.errors import UserError
from benchmark.kinds import KINDS, ComponentKind, register_kind
from methods import METHODS
from methods.l2sp import L2ToStart
from tests.harness import smoke_context


def test_penalty_is_alpha_half_squared_distance_plus_beta_on_the_head():
  start = {"large/w": jnp.array([1.0, 2.0]), "head/kernel": jnp.array([0.0])}
  now = {"large/w": jnp.array([2.0, 0.0]), "head/kernel": jnp.array([3.0])}
  got = float(L2ToStart(alpha=0.5, beta=0.1)(now, start))
  assert got == pytest.approx(0.5 * 0.5 * (1 + 4) + 0.5 * 0.1 * 9)


def _moved(ctx, spec):
  pre = ctx.pretrained_large()
  p = ctx.component(spec).params
  return sum(float(np.sum((p["large/" + k] - pre[k]) ** 2)) for k in pre if "large/" + k in p)


def test_strong_penalty_keeps_the_large_model_near_its_start(tmp_path):
  ctx = smoke_context(tmp_path, **{"lr.ft": 1e-2})
  ft = _moved(ctx, ctx.spec("ft", 0))
  strong = _moved(ctx, ctx.spec("l2sp", 0, alpha=100.0))
  assert ft > 0 and strong < 0.5 * ft


def test_alpha_is_chosen_on_id_validation_only(tmp_path):
  ctx = smoke_context(tmp_path, **{"l2sp.alphas": "0.001,10"})
  m = METHODS.get("l2sp")
  specs = m.specs(ctx, 0)
  assert list(specs) == ["alpha=0.001", "alpha=10"]
  comps = {n: ctx.component(s) for n, s in specs.items()}
  out = m.combine(ctx, 0, comps)
  vals = {n: c.record["scores"]["val"] for n, c in comps.items()}
  best = max(vals, key=vals.get)  # accuracy: higher is better
  assert out.info["chosen"] == best
  np.testing.assert_array_equal(out.preds["test_id"], comps[best].preds["test_id"])


def test_bad_alphas_and_a_regulariser_without_start_point_are_one_line(tmp_path):
  ctx = smoke_context(tmp_path, **{"l2sp.alphas": "x"})
  with pytest.raises(UserError, match="l2sp.alphas"):
    METHODS.get("l2sp").specs(ctx, 0)
  if "test_scratch_l2" not in KINDS:
    base = KINDS.get("fs")
    register_kind(ComponentKind("test_scratch_l2", "fs with a penalty", base.config,
                                base.network, pretrained=False,
                                loss_term=lambda c: L2ToStart(1.0, 0.0)))
  with pytest.raises(UserError, match="no start point|starts from random weights"):
    ctx.spec("test_scratch_l2", 0)
