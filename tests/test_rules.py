"""Unit tests of the pure rules that decide numbers: metrics, ensembles, the
methods' combination rules (``methods.rules``) and the sweep's job order.
Plain arrays, no training: these are what ``make mutation`` runs."""
from __future__ import annotations

import numpy as np
import pytest

from benchmark import metrics, protocol
from benchmark.data import REGRESSION
from methods import rules

CLS = "classification"


# -- metrics ----------------------------------------------------------------------
def test_rmse_and_accuracy_by_hand():
  assert metrics.score(REGRESSION, np.array([1.0, 2.0, 4.0]), np.array([1.0, 0.0, 0.0])) == (
      pytest.approx(np.sqrt((0 + 4 + 16) / 3)))
  logp = np.log(np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.5, 0.4, 0.1], [0.2, 0.7, 0.1]]))
  assert metrics.score(CLS, logp, np.array([0, 2, 1, 1])) == 75.0


def test_rmse_is_computed_in_float64():
  pred = np.full(3, 1e4 + 1, np.float32)
  assert metrics.score(REGRESSION, pred, np.full(3, 1e4)) == 1.0


def test_accuracy_restricted_to_the_split_classes():
  # Class 0 wins overall but is not one of the split's classes: 2 wins there.
  logp = np.log(np.array([[0.6, 0.1, 0.3], [0.5, 0.4, 0.1]]))
  assert metrics.score(CLS, logp, np.array([2, 1]), classes=[1, 2]) == 100.0
  assert metrics.score(CLS, logp, np.array([2, 1])) == 0.0
  assert metrics.score(CLS, logp, np.array([2, 2]), classes=np.array([1, 2])) == 50.0
  # More examples than classes: the argmax runs over classes, per example.
  logp3 = np.log(np.array([[0.1, 0.6, 0.3], [0.2, 0.3, 0.5], [0.3, 0.3, 0.4]]))
  assert metrics.score(CLS, logp3, np.array([1, 2, 2]), classes=[1, 2]) == 100.0
  assert metrics.score(CLS, logp3[:, :2], np.array([1, 0, 0])) == pytest.approx(200 / 3)


def test_better_and_worst_by_task():
  assert metrics.better(REGRESSION, 0.9, 1.0) and not metrics.better(REGRESSION, 1.0, 1.0)
  assert not metrics.better(REGRESSION, 1.1, 1.0)
  assert metrics.better(CLS, 60.0, 50.0) and not metrics.better(CLS, 50.0, 50.0)
  assert not metrics.better(CLS, 40.0, 50.0)
  assert metrics.worst(REGRESSION) == np.inf and metrics.worst(CLS) == -np.inf
  assert metrics.better(REGRESSION, 1e9, metrics.worst(REGRESSION))
  assert metrics.better(CLS, -1e9, metrics.worst(CLS))


def test_ensemble_mean_prediction_and_log_mean_probability():
  a, b = np.array([1.0, 3.0]), np.array([3.0, 7.0])
  np.testing.assert_allclose(metrics.ensemble(REGRESSION, [a, b]), [2.0, 5.0])
  np.testing.assert_allclose(metrics.ensemble(REGRESSION, [a, b], [0.25, 0.75]), [2.5, 6.0])
  pa, pb = np.array([[0.9, 0.1]]), np.array([[0.3, 0.7]])
  out = metrics.ensemble(CLS, [np.log(pa), np.log(pb)])
  np.testing.assert_allclose(np.exp(out), [[0.6, 0.4]])
  out = metrics.ensemble(CLS, [np.log(pa), np.log(pb)], [0.5, 0.5])
  np.testing.assert_allclose(np.exp(out), [[0.6, 0.4]])
  # A probability of zero stays finite (floored), not -inf.
  with np.errstate(divide="ignore"):
    zero = np.log(np.array([[1.0, 0.0]]))
  z = metrics.ensemble(CLS, [zero], [1.0])
  assert np.isfinite(z).all() and z[0, 1] == pytest.approx(np.log(1e-30))


# -- combination rules ------------------------------------------------------------
def test_choose_on_val_best_and_first_on_ties():
  vals = {"a": 50.0, "b": 70.0, "c": 70.0, "d": 10.0}
  assert rules.choose_on_val(CLS, list(vals), vals.get) == ("b", 70.0)
  rmse = {"a": 1.0, "b": 0.8, "c": 0.8, "d": 2.0}
  assert rules.choose_on_val(REGRESSION, list(rmse), rmse.get) == ("b", 0.8)
  assert rules.choose_on_val(CLS, ["x"], lambda _: 0.0) == ("x", 0.0)
  with pytest.raises(ValueError, match="nothing to choose from"):
    rules.choose_on_val(CLS, [], lambda _: 0.0)


def test_choose_on_val_calls_each_candidate_once_in_order():
  seen = []
  rules.choose_on_val(CLS, [0.0, 0.5, 1.0], lambda a: seen.append(a) or -abs(a - 0.5))
  assert seen == [0.0, 0.5, 1.0]


def test_best_first_orders_by_task_and_is_stable():
  vals = {"a": 2.0, "b": 3.0, "c": 1.0, "d": 3.0}
  assert rules.best_first(CLS, vals) == ["b", "d", "a", "c"]
  assert rules.best_first(REGRESSION, vals) == ["c", "a", "b", "d"]


def test_greedy_keeps_ingredients_that_do_not_make_val_worse():
  # Accuracy of a set: adding "bad" lowers it, "same" keeps it, "good" raises it.
  effect = {"first": 0.0, "bad": -5.0, "same": 0.0, "good": 2.0}
  val_of = lambda names: 60.0 + sum(effect[n] for n in names)
  chosen, best = rules.greedy(CLS, ["first", "bad", "same", "good"], val_of)
  assert chosen == ["first", "same", "good"] and best == 62.0
  # Regression: lower is better.
  effect_r = {"first": 0.0, "bad": 0.5, "same": 0.0, "good": -0.25}
  val_r = lambda names: 1.0 + sum(effect_r[n] for n in names)
  chosen, best = rules.greedy(REGRESSION, ["first", "bad", "same", "good"], val_r)
  assert chosen == ["first", "same", "good"] and best == 0.75
  assert rules.greedy(CLS, ["first"], val_of) == (["first"], 60.0)


def test_greedy_scores_each_candidate_set_with_what_was_kept():
  calls = []
  rules.greedy(CLS, ["a", "b", "c"], lambda names: calls.append(list(names)) or (
      0.0 if "b" in names else 1.0))
  assert calls == [["a"], ["a", "b"], ["a", "c"]]


def test_nll_and_temperature_by_hand():
  logp = np.log(np.array([[0.8, 0.2], [0.4, 0.6]]))
  label = np.array([0, 0])
  assert rules.nll(logp, label, 1.0) == pytest.approx(-(np.log(0.8) + np.log(0.4)) / 2)
  z = logp / 2.0
  p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
  assert rules.nll(logp, label, 2.0) == pytest.approx(-np.mean(np.log(p[[0, 1], [0, 0]])))
  t = rules.temperature(logp, label)
  assert t in rules.TEMPERATURES
  assert rules.nll(logp, label, t) == min(rules.nll(logp, label, u) for u in rules.TEMPERATURES)


def test_temperature_grid_is_the_log_grid_from_0_05_to_20():
  g = rules.TEMPERATURES
  assert len(g) == 121 and g[0] == pytest.approx(0.05) and g[-1] == pytest.approx(20.0)
  np.testing.assert_allclose(np.diff(np.log(g)), np.log(400.0) / 120)


def test_temperature_overconfident_model_is_softened():
  # Right 60% of the time with confidence ~1: the NLL-best temperature is large.
  rng = np.random.default_rng(0)
  label = rng.integers(0, 3, 200)
  guess = np.where(rng.random(200) < 0.6, label, (label + 1) % 3)
  logits = 20.0 * np.eye(3)[guess]
  t = rules.temperature(rules.log_softmax(logits), label)
  assert t > 5.0
  # A calibrated-by-construction model keeps t close to 1.
  probs = rng.dirichlet(np.ones(3), 2000)
  lab = np.array([rng.choice(3, p=p) for p in probs])
  assert 0.8 < rules.temperature(np.log(probs), lab) < 1.25


def test_affine_recovers_a_linear_relation():
  pred = np.array([0.0, 1.0, 2.0, 3.0], np.float32)
  a, b = rules.affine(pred, 2.0 * pred + 1.0)
  assert (a, b) == (pytest.approx(2.0), pytest.approx(1.0))
  assert isinstance(a, float) and isinstance(b, float)


def test_log_softmax_normalises_and_is_shift_invariant():
  z = np.array([[1.0, 2.0, 3.0], [1000.0, 1000.0, 0.0]])
  out = rules.log_softmax(z)
  np.testing.assert_allclose(np.exp(out).sum(-1), 1.0)
  np.testing.assert_allclose(out[0], z[0] - np.log(np.exp(z[0]).sum()))
  np.testing.assert_allclose(out[1, :2], np.log(0.5))


def test_calibrate_regression_is_the_val_fit_applied_to_every_split():
  preds = {"val": np.array([0.0, 1.0, 2.0]), "test_id": np.array([3.0, 4.0])}
  out, info = rules.calibrate(REGRESSION, preds, np.array([1.0, 3.0, 5.0]))
  assert info == {"a": pytest.approx(2.0), "b": pytest.approx(1.0)}
  np.testing.assert_allclose(out["test_id"], [7.0, 9.0])
  np.testing.assert_allclose(out["val"], [1.0, 3.0, 5.0])


def test_calibrate_classification_divides_by_the_val_temperature():
  rng = np.random.default_rng(1)
  val_logits = 10.0 * rng.standard_normal((50, 3))
  label = rng.integers(0, 3, 50)
  preds = {"val": val_logits, "ood/x": val_logits[:5] * 0.5}
  out, info = rules.calibrate(CLS, preds, label)
  t = info["temperature"]
  assert t == rules.temperature(val_logits, label) and set(info) == {"temperature"}
  np.testing.assert_allclose(out["ood/x"], rules.log_softmax(preds["ood/x"] / t))
  np.testing.assert_allclose(out["val"], rules.log_softmax(val_logits / t))


def test_calibrated_ensemble_averages_the_calibrated_members():
  val_label = np.array([1.0, 3.0, 5.0])
  ft = {"val": np.array([0.0, 1.0, 2.0]), "test_id": np.array([10.0])}     # label = 2p + 1
  lp = {"val": np.array([1.0, 3.0, 5.0]), "test_id": np.array([10.0])}     # label = p
  out, info = rules.calibrated_ensemble(REGRESSION, {"ft": ft, "lp": lp}, val_label)
  assert list(info) == ["ft", "lp"]
  assert info["ft"]["a"] == pytest.approx(2.0) and info["lp"]["a"] == pytest.approx(1.0)
  np.testing.assert_allclose(out["test_id"], [(21.0 + 10.0) / 2])
  assert set(out) == {"val", "test_id"}


def test_calibrated_ensemble_classification_is_log_mean_probability():
  rng = np.random.default_rng(2)
  label = rng.integers(0, 2, 40)
  a = {"val": rng.standard_normal((40, 2)) * 4, "test_id": rng.standard_normal((3, 2))}
  b = {"val": rng.standard_normal((40, 2)), "test_id": rng.standard_normal((3, 2))}
  out, info = rules.calibrated_ensemble(CLS, {"a": a, "b": b}, label)
  ca, _ = rules.calibrate(CLS, a, label)
  cb, _ = rules.calibrate(CLS, b, label)
  np.testing.assert_allclose(np.exp(out["test_id"]),
                             (np.exp(ca["test_id"]) + np.exp(cb["test_id"])) / 2, rtol=1e-6)


# -- sweep order ------------------------------------------------------------------
def test_jobs_every_method_every_seed_and_shards_partition_them():
  all_jobs = protocol.jobs(["m1", "m2"], [0, 1, 2])
  assert all_jobs == [("m1", 0), ("m1", 1), ("m1", 2), ("m2", 0), ("m2", 1), ("m2", 2)]
  shards = [protocol.jobs(["m1", "m2"], [0, 1, 2], (i, 4)) for i in range(4)]
  assert shards[0] == [("m1", 0), ("m2", 1)] and shards[3] == [("m2", 0)]
  assert sorted(j for s in shards for j in s) == sorted(all_jobs)
