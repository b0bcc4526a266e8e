"""Deferred evaluation: a model that trains the large one predicts test_id and
OOD only when a method uses it, with the same numbers as predicting them at
the end of training; candidates that selection on ID validation drops are
never run over them, and a killed evaluation leaves a record that resumes."""
from __future__ import annotations

import json

import numpy as np
import pytest

from benchmark.runner import NotStored
from methods import METHODS
from tests.harness import smoke_context

# Two L2-SP strengths: one is chosen on ID validation, the other is dropped.
ALPHAS = {"l2sp.alphas": "0.001,10"}


def _record(ctx, spec) -> dict:
  return json.loads(ctx.store.component_path(spec.kind, spec.key).read_text())


def _stored_preds(ctx, spec) -> dict:
  p = ctx.store.component_path(spec.kind, spec.key)
  with np.load(p.with_name(spec.key + ".preds.npz")) as z:
    return {k: z[k] for k in z.files}


def _combine(ctx, method: str = "l2sp", seed: int = 0):
  m = METHODS.get(method)
  specs = m.specs(ctx, seed)
  comps = {n: ctx.component(s) for n, s in specs.items()}
  return specs, comps, m.combine(ctx, seed, comps)


def test_dropped_candidates_are_never_evaluated_and_the_chosen_one_equals_eager(tmp_path):
  lazy = smoke_context(tmp_path / "lazy", **ALPHAS)
  specs, comps, out = _combine(lazy)
  chosen = out.info["chosen"]
  (dropped,) = [n for n in specs if n != chosen]
  val_only = _stored_preds(lazy, specs[dropped])
  assert list(val_only) == ["val"]
  assert _record(lazy, specs[dropped])["deferred"][0] == "test_id"
  assert "test_id" not in _record(lazy, specs[dropped])["scores"]
  done = _record(lazy, specs[chosen])
  assert "deferred" not in done and "test_id" in done["scores"]
  assert done["timings"]["deferred_eval_s"] > 0

  eager_ctx = smoke_context(tmp_path / "eager", **ALPHAS)
  eager_ctx.runner.defer_eval = False
  especs, ecomps, eout = _combine(eager_ctx)
  assert eout.info["chosen"] == chosen
  for name in specs:  # the same training, bit for bit
    assert "deferred" not in _record(eager_ctx, especs[name])
    np.testing.assert_array_equal(val_only["val"] if name == dropped
                                  else comps[name].preds["val"], ecomps[name].preds["val"])
  for split, p in eout.preds.items():
    np.testing.assert_array_equal(out.preds[split], p, err_msg=split)
  assert _record(lazy, specs[chosen])["scores"] == _record(eager_ctx, especs[chosen])["scores"]


def test_a_deferred_record_is_evaluated_on_first_use_by_a_later_process(tmp_path):
  ctx = smoke_context(tmp_path, **ALPHAS)
  specs, comps, _ = _combine(ctx)
  spec = next(s for s in specs.values() if _record(ctx, s).get("deferred"))
  val = _stored_preds(ctx, spec)["val"]

  later = smoke_context(tmp_path, **ALPHAS)   # a new runner over the same store
  res = later.component(spec)
  assert spec.key in later.loaded and not later.trained
  preds = res.preds
  assert set(preds) == set(later.splits.eval_splits())
  np.testing.assert_array_equal(preds["val"], val)
  rec = _record(later, spec)
  assert "deferred" not in rec and set(rec["scores"]) == set(preds)
  assert set(_stored_preds(later, spec)) == set(preds)

  again = smoke_context(tmp_path, **ALPHAS)   # complete now: read, not recomputed
  got = again.component(spec).preds
  for split in preds:
    np.testing.assert_array_equal(got[split], preds[split])
  assert again.component(spec).record == rec


def test_frozen_large_and_small_models_are_evaluated_at_once(tmp_path):
  ctx = smoke_context(tmp_path)
  for kind in ("lp", "small"):
    spec = ctx.spec(kind, 0)
    ctx.component(spec)
    assert "deferred" not in _record(ctx, spec)
    assert "test_id" in _stored_preds(ctx, spec)


def test_store_only_does_not_evaluate(tmp_path):
  ctx = smoke_context(tmp_path, **ALPHAS)
  specs, _, _ = _combine(ctx)
  spec = next(s for s in specs.values() if _record(ctx, s).get("deferred"))
  later = smoke_context(tmp_path, **ALPHAS)
  later.runner.store_only = True
  with pytest.raises(NotStored, match="not evaluated"):
    later.component(spec).preds
  assert _record(later, spec).get("deferred")


def test_the_stored_val_predictions_are_the_best_epochs_not_the_last(tmp_path, monkeypatch):
  # The end of training reuses the best epoch's validation pass: with the
  # first epoch forced to stay best, the record's val score must be its.
  from benchmark import metrics
  from benchmark import trainer as T
  monkeypatch.setattr(T.metrics, "better",
                      lambda task, v, best: best == metrics.worst(task))
  ctx = smoke_context(tmp_path, epochs=3, **{"lr.ft": 1e-2})
  res = ctx.component(ctx.spec("ft", 0))
  rec = res.record
  assert rec["best_epoch"] == 0 and rec["val_curve"][0] != rec["val_curve"][-1]
  assert rec["scores"]["val"] == rec["val_curve"][0]
  label = np.asarray(ctx.splits.val.label)
  assert metrics.score(ctx.task, res.preds["val"], label) == rec["val_curve"][0]
