"""LEVI with BatchEnsemble adapting layers: fewer adapter parameters than
LEVI's, the members differ, it trains like LEVI, and it is an extra row of
the comparison tables and of Table 3."""
from __future__ import annotations

import numpy as np
from flax import nnx

from benchmark import paper_tables as PT
from methods import METHODS
from methods.levi_batchensemble import BatchEnsembleAdapters, adapter_params
from tests.harness import smoke_context


def test_adapters_are_cheaper_than_levis(tmp_path):
  ctx = smoke_context(tmp_path)
  levi, _ = ctx.structure("levi_light")
  be, _ = ctx.structure("levi_batchensemble")
  assert adapter_params(be) < adapter_params(levi)
  # One shared matrix per layer plus rank-one factors and biases per member.
  n, d, h = len(ctx.levi_taps()), max(be.adapters.dins), ctx.config.model.adapter_hidden
  out = ctx.info.out_dim
  assert adapter_params(be) == d * h + n * (d + 2 * h) + h * out + n * (h + 2 * out)


def test_members_differ_and_taps_of_other_widths_are_padded():
  ad = BatchEnsembleAdapters([3, 5], 4, 2, rngs=nnx.Rngs(0))
  x = np.ones((2, 3), np.float32)
  a, b = ad(0, x), ad(1, np.pad(x, ((0, 0), (0, 2))))
  assert a.shape == b.shape == (2, 2) and not np.allclose(a, b)


def test_trains_and_is_an_extra_row(tmp_path):
  ctx = smoke_context(tmp_path)
  res = ctx.component(ctx.spec("levi_batchensemble", 0))
  assert res.preds["test_id"].shape[0] == len(ctx.splits.test_id)
  assert any(k.startswith("adapters/hidden/shared") for k in res.params)
  m = METHODS.get("levi_batchensemble")
  assert m.extra_row
  t = PT.TABLES[1].with_more_extras([(m.name, m.label + PT.EXTRA_MARK)])
  assert t.extra_rows[-1][0] == "levi_batchensemble"
  assert PT.TABLES[5].with_more_extras([(m.name, "x")]) == PT.TABLES[5]  # no extras there
