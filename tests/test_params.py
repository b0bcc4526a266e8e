"""Freezing rules and loading flat parameter dicts into nnx modules."""
from __future__ import annotations

import numpy as np
import pytest
from flax import nnx

from benchmark.errors import UserError
from benchmark.models import params as P
from benchmark.models.tabular import TabularMLP

SPEC = {"num": 3, "cat_vocab": (4,)}


def model(seed: int = 0) -> TabularMLP:
  # Params: embed/embeds/0/embedding (4, 2); blocks/0 kernel (5, 5) + bias (5,);
  # blocks/1 kernel (5, 6) + bias (6,).
  return TabularMLP(SPEC, (5, 6), 2, rngs=nnx.Rngs(seed))


SIZES = {"embed/embeds/0/embedding": 8, "blocks/0/kernel": 25, "blocks/0/bias": 5,
         "blocks/1/kernel": 30, "blocks/1/bias": 6}
TOTAL = sum(SIZES.values())


def test_rule_matcher_first_match_wins():
  match = P.rule_matcher([(r"blocks/1/", True), (r"blocks/", False), (r".*", True)])
  assert match("large/blocks/1/kernel") is True      # first rule, though rule 2 matches too
  assert match("large/blocks/0/kernel") is False     # second rule, though rule 3 matches
  assert match("head/kernel") is True                # only the catch-all

  reversed_order = P.rule_matcher([(r"blocks/", False), (r"blocks/1/", True)])
  assert reversed_order("large/blocks/1/kernel") is False


def test_rule_matcher_searches_not_anchored_unless_asked():
  match = P.rule_matcher([(r"^large/", False), (r"kernel$", True), (r"bias", True)])
  assert match("large/blocks/0/kernel") is False
  assert match("small/layers/0/kernel") is True
  assert match("small/layers/0/bias") is True


def test_rule_matcher_raises_when_nothing_matches():
  match = P.rule_matcher([(r"^large/", False), (r"^head/", True)])
  with pytest.raises(ValueError, match="small/layers/0/kernel"):
    match("small/layers/0/kernel")
  with pytest.raises(ValueError):
    P.rule_matcher([])("anything")


def test_check_rules_counts():
  m = model()
  assert {k: v.size for k, v in P.flat_params(m).items()} == SIZES
  assert P.check_rules(m, [(r".*", True)]) == (TOTAL, TOTAL)
  assert P.check_rules(m, [(r".*", False)]) == (0, TOTAL)
  assert P.check_rules(m, [(r"^blocks/1/", True), (r".*", False)]) == (36, TOTAL)
  assert P.check_rules(m, [(r"^blocks/", True), (r"^embed/", False)]) == (66, TOTAL)
  assert P.check_rules(m, [(r"bias$", True), (r"^blocks/1/", True), (r".*", False)]) \
      == (5 + 6 + 30, TOTAL)
  with pytest.raises(ValueError, match="embed/embeds/0/embedding"):
    P.check_rules(m, [(r"^blocks/", True)])


def test_load_params_roundtrip():
  src, dst = model(seed=1), model(seed=2)
  flat = P.flat_params(src)
  assert any(not np.array_equal(flat[k], v) for k, v in P.flat_params(dst).items())
  assert P.load_params(dst, flat, strict=True) == len(SIZES)
  for k, v in P.flat_params(dst).items():
    np.testing.assert_array_equal(v, flat[k], err_msg=k)


def test_load_params_partial_and_strict():
  dst = model(seed=2)
  before = P.flat_params(dst)
  new_bias = np.arange(6, dtype=np.float32)
  assert P.load_params(dst, {"blocks/1/bias": new_bias}) == 1
  after = P.flat_params(dst)
  np.testing.assert_array_equal(after["blocks/1/bias"], new_bias)
  for k in SIZES:
    if k != "blocks/1/bias":
      np.testing.assert_array_equal(after[k], before[k], err_msg=k)
  with pytest.raises(UserError, match="not in the model"):
    P.load_params(dst, {"blocks/1/bias": new_bias, "blocks/9/kernel": np.zeros(1)},
                  strict=True)


def test_load_params_shape_mismatch_is_user_error():
  dst = model(seed=2)
  before = P.flat_params(dst)
  other = TabularMLP(SPEC, (5, 7), 2, rngs=nnx.Rngs(1))   # blocks/1 is 5 -> 7
  with pytest.raises(UserError, match=r"blocks/1/(kernel|bias).*shape") as e:
    P.load_params(dst, P.flat_params(other), source="my.ckpt")
  assert str(e.value).startswith("my.ckpt:")
  assert "\n" not in str(e.value)
  # Nothing was half-loaded.
  for k, v in P.flat_params(dst).items():
    np.testing.assert_array_equal(v, before[k], err_msg=k)
